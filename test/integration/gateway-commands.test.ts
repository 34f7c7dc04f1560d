/**
 * Commands to MQTT devices through the gateway (broker mode), sent with the
 * same API as for agents: a round trip to an online device; an offline device
 * that comes back before the deadline; one that does not (expired); one that
 * receives the command and never answers (unknown). Every command ends in one
 * terminal result; none is delivered after its deadline.
 */
import type { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { sendCommand, waitForResult } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import { type RunningGateway, startGateway } from '../harness/gateway.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { waitFor } from '../harness/streams.js';

let redis: RedisServer;
let client: Redis;
let gw: RunningGateway;
let keys: Keys;
const devices: MqttClient[] = [];

beforeAll(async () => {
  redis = await startRedis({ local: true });
  client = redis.client();
  const prefix = randomPrefix();
  keys = new Keys(prefix, 4);
  gw = await startGateway({
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'commands.pollInterval': 50,
    'commands.sweepInterval': 200,
  });
});
afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.endAsync(true)));
});
afterAll(async () => {
  await gw.stop();
  client.disconnect();
  await redis.destroy();
});

interface CommandMessage {
  id: string;
  name: string;
  args: Record<string, unknown>;
  deadline: number;
}

/** An MQTT device that answers commands (or not) on its result topic. */
async function device(id: string, answer: boolean, received: CommandMessage[] = []): Promise<MqttClient> {
  const d = await mqtt.connectAsync(gw.url, { clientId: id, clean: false, reconnectPeriod: 0 });
  devices.push(d);
  d.on('message', (_topic, payload) => {
    const cmd = JSON.parse(payload.toString()) as CommandMessage;
    received.push(cmd);
    if (answer)
      void d.publishAsync(
        `devices/${id}/results`,
        JSON.stringify({ id: cmd.id, status: 'succeeded', output: { echo: cmd.args } }),
        { qos: 1 },
      );
  });
  await d.subscribeAsync(`devices/${id}/commands`, { qos: 1 });
  return d;
}

it('runs a command round trip to an online MQTT device', async () => {
  await device('cmd-on', true);
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), 'cmd-on')) === 1,
    10_000,
    'registered',
  );
  const sent = await sendCommand(client, keys, 'cmd-on', { name: 'ping', args: { n: 1 }, ttlMs: 20_000 });
  const result = await waitForResult(client, keys, 'cmd-on', sent.command.id, 20_000);
  expect(result).toMatchObject({ status: 'succeeded', output: { echo: { n: 1 } }, name: 'ping' });
});

it('holds a command for an offline device and delivers it when the device comes back before the deadline', async () => {
  const first = await device('cmd-back', true);
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), 'cmd-back')) === 1,
    10_000,
    'registered',
  );
  await first.endAsync();
  devices.splice(devices.indexOf(first), 1);
  const sent = await sendCommand(client, keys, 'cmd-back', { name: 'reboot', ttlMs: 20_000 });
  // Offline: the gateway holds it (the ledger stays short of a result).
  await new Promise((r) => setTimeout(r, 300));
  expect(await client.hget(keys.commandLedger('cmd-back', sent.command.id), 'st')).toBe('queued');
  const received: CommandMessage[] = [];
  await device('cmd-back', true, received);
  const result = await waitForResult(client, keys, 'cmd-back', sent.command.id, 20_000);
  expect(result.status).toBe('succeeded');
  expect(received.map((c) => c.id)).toContain(sent.command.id);
});

it('ends a command as expired when the device does not come back, and never delivers it late', async () => {
  const first = await device('cmd-gone', true);
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), 'cmd-gone')) === 1,
    10_000,
    'registered',
  );
  await first.endAsync();
  devices.splice(devices.indexOf(first), 1);
  const sent = await sendCommand(client, keys, 'cmd-gone', { name: 'reboot', ttlMs: 800 });
  const result = await waitForResult(client, keys, 'cmd-gone', sent.command.id, 20_000);
  expect(result.status).toBe('expired');
  // Coming back after the deadline, the device gets nothing.
  const received: CommandMessage[] = [];
  await device('cmd-gone', true, received);
  await new Promise((r) => setTimeout(r, 500));
  expect(received).toEqual([]);
  const results = await client.xlen(keys.results());
  expect(results).toBeGreaterThan(0);
});

it('ends a command as unknown when the device received it and never answered', async () => {
  const received: CommandMessage[] = [];
  await device('cmd-mute', false, received);
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), 'cmd-mute')) === 1,
    10_000,
    'registered',
  );
  const sent = await sendCommand(client, keys, 'cmd-mute', { name: 'ping', ttlMs: 1000 });
  const result = await waitForResult(client, keys, 'cmd-mute', sent.command.id, 20_000);
  expect(result.status).toBe('unknown');
  expect(received.map((c) => c.id)).toEqual([sent.command.id]);
});
