/**
 * docs/guarantees.md §3 in bridge mode. The devices' PUBACKs come from
 * mosquitto, not from the gateway, so the promise is: every message mosquitto
 * accepted reaches the stream, once (payloads carry a seq). It holds because
 * the gateway acknowledges to mosquitto only after the append, on persistent
 * sessions: what the killed gateway never acknowledged, and what arrived
 * while it was down, mosquitto delivers again after the restart, and the
 * idempotent append refuses the copies already in the stream.
 *
 * QoS 1 publishers on a real mosquitto; the gateway (a child process) is
 * killed with SIGKILL while they publish, they go on while it is down, and it
 * is restarted with the same gateway.id (so the same client ids and sessions).
 */
import type { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import type { AgentProcess } from '../harness/agent-process.js';
import { startGatewayProcessReady } from '../harness/gateway.js';
import { type MosquittoBroker, startMosquitto } from '../harness/mosquitto.js';
import { QosPublisher } from '../harness/mqtt-device.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { countAllTelemetry, readAllTelemetry, waitFor } from '../harness/streams.js';

let redis: RedisServer;
let client: Redis;
let mosquitto: MosquittoBroker;

beforeAll(async () => {
  [redis, mosquitto] = await Promise.all([startRedis({ local: true }), startMosquitto()]);
  client = redis.client();
});
afterAll(async () => {
  client.disconnect();
  await Promise.all([redis.destroy(), mosquitto.stop()]);
});

const DEVICES = 4;

it('every message mosquitto accepted is in the stream once across a SIGKILL of the bridging gateway', async () => {
  const prefix = randomPrefix();
  const keys = new Keys(prefix, 4);
  const flags = {
    'gateway.mode': 'bridge',
    'gateway.id': 'gw-bridge-crash',
    'bridge.url': mosquitto.url,
    'bridge.group': prefix,
    'bridge.connections': 3,
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'log.level': 'info',
  };
  const start = (): Promise<AgentProcess> => startGatewayProcessReady(flags);
  let gw = await start();
  const devices = await Promise.all(
    Array.from({ length: DEVICES }, async (_, i) => {
      const c = await mqtt.connectAsync(mosquitto.url, {
        clientId: `bcrash-${i}`,
        clean: false,
        reconnectPeriod: 100,
      });
      return new QosPublisher(`bcrash-${i}`, c, 4);
    }),
  );
  const acked = () => devices.reduce((n, d) => n + d.acked.size, 0);
  const stored = () => readAllTelemetry(client, keys);
  try {
    await waitFor(async () => (await stored()).length >= 400, 30_000, '400 entries through the gateway');
    // Killed with appends in flight: Redis holds writes back for a moment (CLIENT PAUSE WRITE), so
    // the gateway has messages taken from mosquitto and not in Redis when it dies. A gateway that
    // acknowledged before its append would lose them (checked: the test then fails).
    await client.client('PAUSE', 2000, 'WRITE');
    await new Promise((r) => setTimeout(r, 500));
    await gw.kill('SIGKILL');
    await client.client('UNPAUSE');
    // Mosquitto keeps accepting while no gateway runs: these wait in the gateway's sessions.
    const ackedAtKill = acked();
    await waitFor(async () => acked() >= ackedAtKill + 400, 30_000, '400 more accepted while it is down');
    gw = await start();
    const ackedAtRestart = acked();
    await waitFor(async () => acked() >= ackedAtRestart + 400, 30_000, '400 more after the restart');
    await Promise.all(devices.map((d) => d.stop()));
    const total = acked();
    // The restarted gateway drains what mosquitto queued while it was down; on a loaded machine
    // that takes a while, so wait on the cheap count and read everything once.
    let count = 0;
    await waitFor(
      async () => {
        count = await countAllTelemetry(client, keys);
        return count >= total;
      },
      60_000,
      `all ${total} accepted messages in the stream`,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}: ${count} of ${total} there`);
    });
    const all = await stored();
    for (const d of devices) {
      const seqs = all.filter((e) => e.deviceId === d.id).map((e) => e.seq);
      // Once: the redelivered copies were refused by the idempotent append.
      expect(new Set(seqs).size).toBe(seqs.length);
      const have = new Set(seqs);
      expect([...d.acked].filter((s) => !have.has(s))).toEqual([]);
    }
    // Nothing beyond what the devices sent, and nothing rejected on the way.
    expect(all.length).toBe(total);
    expect(await client.xlen(keys.rejected())).toBe(0);
  } finally {
    await Promise.all(devices.map((d) => d.client.endAsync(true)));
    await gw.kill('SIGTERM');
  }
}, 180_000);
