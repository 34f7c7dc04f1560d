/**
 * Commands to MQTT devices in bridge mode: the devices are clients of a real
 * mosquitto, the gateway a client too. A round trip (over MQTT v5 and 3.1.1
 * to the broker); an offline device with a persistent session that comes
 * back before the deadline gets the command from mosquitto's queue; one that
 * comes back after it gets nothing (the gateway publishes with a v5 Message
 * Expiry Interval, so mosquitto drops it [MQTT-3.3.2-5]) and the command ends
 * `expired`; a device online that never answers ends `unknown`. `delivered`
 * is recorded only when the device replies: mosquitto's PUBACK to the gateway
 * says the broker has the command, not the device.
 */
import type { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Sent, sendCommand, waitForResult } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import { readResults, resultsByCommand } from '../harness/commands.js';
import { type RunningGateway, startGateway } from '../harness/gateway.js';
import { type MosquittoBroker, startMosquitto } from '../harness/mosquitto.js';
import { type CommandDeviceOptions, type CommandMessage, commandDevice } from '../harness/mqtt-device.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { waitFor } from '../harness/streams.js';

let redis: RedisServer;
let client: Redis;
let mosquitto: MosquittoBroker;
const devices: MqttClient[] = [];

beforeAll(async () => {
  [redis, mosquitto] = await Promise.all([startRedis({ local: true }), startMosquitto()]);
  client = redis.client();
});
afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.endAsync(true)));
});
afterAll(async () => {
  client.disconnect();
  await Promise.all([redis.destroy(), mosquitto.stop()]);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function bridgeGateway(
  extra: Record<string, unknown> = {},
): Promise<{ gw: RunningGateway; keys: Keys }> {
  const prefix = randomPrefix();
  const gw = await startGateway({
    'gateway.mode': 'bridge',
    'gateway.id': `brc-${prefix}`,
    'bridge.url': mosquitto.url,
    'bridge.group': prefix,
    'bridge.connections': 2,
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'commands.pollInterval': 200,
    'commands.sweepInterval': 200,
    ...extra,
  });
  return { gw, keys: new Keys(prefix, 4) };
}

/** A device on mosquitto; it publishes one reading so the gateway learns of it (bridge mode sees publishes only). */
async function device(id: string, keys: Keys, options: CommandDeviceOptions = {}): Promise<MqttClient> {
  const d = await commandDevice(mosquitto.url, id, options);
  devices.push(d);
  await d.publishAsync(`devices/${id}/telemetry/t`, JSON.stringify({ v: 1 }), { qos: 1 });
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), id)) === 1,
    10_000,
    `${id} registered`,
  );
  return d;
}

async function goOffline(d: MqttClient): Promise<void> {
  devices.splice(devices.indexOf(d), 1);
  await d.endAsync();
}

async function resultsOf(keys: Keys, deviceId: string, sent: Sent) {
  return resultsByCommand(await readResults(client, keys)).get(`${deviceId}/${sent.command.id}`) ?? [];
}

describe.each(['5', '4'])('bridge over MQTT %s', (version) => {
  let gw: RunningGateway;
  let keys: Keys;
  beforeAll(async () => {
    ({ gw, keys } = await bridgeGateway({ 'bridge.protocolVersion': version }));
  });
  afterAll(async () => {
    await gw.stop();
  });

  it('runs a command round trip to a device on the upstream broker', async () => {
    const id = `brc-on-${version}`;
    const received: CommandMessage[] = [];
    await device(id, keys, { received });
    const sent = await sendCommand(client, keys, id, { name: 'ping', args: { n: 7 }, ttlMs: 30_000 });
    const result = await waitForResult(client, keys, id, sent.command.id, 20_000);
    expect(result).toMatchObject({ status: 'succeeded', output: { echo: { n: 7 } }, attempts: 1 });
    expect(result.deliveredAt).toBeGreaterThanOrEqual(sent.command.issuedAt);
    expect(received.map((c) => c.id)).toEqual([sent.command.id]);
    await sleep(1000);
    expect((await resultsOf(keys, id, sent)).map((r) => r.status)).toEqual(['succeeded']);
  });
});

describe('bridge over MQTT 5: deadlines at the upstream broker', () => {
  let gw: RunningGateway;
  let keys: Keys;
  beforeAll(async () => {
    ({ gw, keys } = await bridgeGateway());
  });
  afterAll(async () => {
    await gw.stop();
  });

  it('an offline device with a persistent session gets the command when it comes back before the deadline', async () => {
    const id = 'brc-back';
    await goOffline(await device(id, keys));
    const sent = await sendCommand(client, keys, id, { name: 'reboot', ttlMs: 30_000 });
    // Mosquitto holds it for the session; the ledger does not claim it was delivered.
    await sleep(1500);
    expect(await client.hget(keys.commandLedger(id, sent.command.id), 'st')).toBe('queued');
    const received: CommandMessage[] = [];
    devices.push(await commandDevice(mosquitto.url, id, { received }));
    const result = await waitForResult(client, keys, id, sent.command.id, 20_000);
    expect(result).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(received.map((c) => c.id)).toEqual([sent.command.id]);
    await sleep(500);
    expect(await resultsOf(keys, id, sent)).toHaveLength(1);
  });

  it('ends a command expired when the device does not come back, and mosquitto never delivers it late', async () => {
    const id = 'brc-gone';
    await goOffline(await device(id, keys));
    // Published with an expiry of 2 s (3.4 s left, rounded down, one off), queued for the offline session.
    // Without the expiry (or without the second off: mosquitto keeps it up to a second longer)
    // the device reconnecting right after the deadline could get it.
    const sent = await sendCommand(client, keys, id, { name: 'reboot', ttlMs: 3500 });
    const result = await waitForResult(client, keys, id, sent.command.id, 20_000);
    expect(result).toMatchObject({ status: 'expired', attempts: 0 });
    expect(result.deliveredAt).toBeUndefined();
    // Back after the deadline with the same persistent session: the queued command is gone.
    const received: CommandMessage[] = [];
    devices.push(await commandDevice(mosquitto.url, id, { received }));
    await sleep(1500);
    expect(received).toEqual([]);
    expect((await resultsOf(keys, id, sent)).map((r) => r.status)).toEqual(['expired']);
  });

  it('ends a command unknown when the device was online, received it and never answered', async () => {
    const id = 'brc-mute';
    const received: CommandMessage[] = [];
    const d = await device(id, keys, { answer: false, received });
    const sent = await sendCommand(client, keys, id, { name: 'ping', ttlMs: 3000 });
    await waitFor(async () => received.length === 1, 10_000, 'command received');
    // Still publishing readings: the gateway sees it online after the broker took the command.
    await d.publishAsync(`devices/${id}/telemetry/t`, JSON.stringify({ v: 2 }), { qos: 1 });
    const result = await waitForResult(client, keys, id, sent.command.id, 20_000);
    expect(result.status).toBe('unknown');
  });
});
