import mqtt from 'mqtt';
import { expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import type { AgentProcess } from '../harness/agent-process.js';
import { startGatewayProcessReady } from '../harness/gateway.js';
import { useMosquitto } from '../harness/mosquitto.js';
import { QosPublisher } from '../harness/mqtt-device.js';
import { randomPrefix } from '../harness/prefix.js';
import { useLocalRedis } from '../harness/redis-server.js';
import { countAllTelemetry, readAllTelemetry, waitFor } from '../harness/streams.js';

const redis = useLocalRedis();
const mosquitto = useMosquitto();

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
    'redis.url': redis.server.url,
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
  const stored = () => readAllTelemetry(redis.client, keys);
  try {
    await waitFor(async () => (await stored()).length >= 400, 30_000, '400 entries through the gateway');
    // Killed with appends in flight: Redis holds writes back for a moment (CLIENT PAUSE WRITE), so
    // the gateway has messages taken from mosquitto and not in Redis when it dies. A gateway that
    // acknowledged before its append would lose them (checked: the test then fails).
    await redis.client.client('PAUSE', 2000, 'WRITE');
    await new Promise((r) => setTimeout(r, 500));
    await gw.kill('SIGKILL');
    await redis.client.client('UNPAUSE');
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
        count = await countAllTelemetry(redis.client, keys);
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
    expect(await redis.client.xlen(keys.rejected())).toBe(0);
  } finally {
    await Promise.all(devices.map((d) => d.client.endAsync(true)));
    await gw.kill('SIGTERM');
  }
}, 180_000);
