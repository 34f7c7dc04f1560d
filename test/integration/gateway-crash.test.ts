/**
 * docs/guarantees.md §3: the gateway acknowledges a QoS 1 publish only
 * after its entry is in Redis, so SIGKILL loses nothing a device was told was
 * delivered. Devices publish continuously at QoS 1 while the gateway (a child
 * process) is killed and restarted; afterwards every acknowledged message is
 * in the stream, exactly once.
 */
import mqtt from 'mqtt';
import { expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import type { AgentProcess } from '../harness/agent-process.js';
import { startGatewayProcessReady } from '../harness/gateway.js';
import { QosPublisher } from '../harness/mqtt-device.js';
import { freePort } from '../harness/ports.js';
import { randomPrefix } from '../harness/prefix.js';
import { useLocalRedis } from '../harness/redis-server.js';
import { readAllTelemetry, waitFor } from '../harness/streams.js';

const local = useLocalRedis();

const DEVICES = 4;
it('loses no acknowledged QoS 1 publish and duplicates none across a SIGKILL of the gateway', async () => {
  const prefix = randomPrefix();
  const keys = new Keys(prefix, 4);
  const port = await freePort();
  const flags = {
    'gateway.mode': 'broker',
    'gateway.id': 'gw-crash',
    'broker.port': port,
    'redis.url': local.server.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'log.level': 'info',
  };
  const start = (): Promise<AgentProcess> => startGatewayProcessReady(flags);
  let gw = await start();
  const devices = await Promise.all(
    Array.from({ length: DEVICES }, async (_, i) => {
      // Persistent sessions and in-memory outgoing stores: in-flight publishes are resent after reconnecting.
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
        clientId: `crash-${i}`,
        clean: false,
        reconnectPeriod: 100,
        connectTimeout: 5000,
      });
      return new QosPublisher(`crash-${i}`, c);
    }),
  );
  const total = () => devices.reduce((n, d) => n + d.acked.size, 0);
  try {
    await waitFor(async () => total() >= 400, 30_000, '400 acknowledged publishes');
    await gw.kill('SIGKILL');
    const ackedAtKill = total();
    gw = await start();
    await waitFor(async () => total() >= ackedAtKill + 400, 30_000, '400 more after the restart');
    await Promise.all(devices.map((d) => d.stop()));
    const stored = await readAllTelemetry(local.client, keys);
    for (const d of devices) {
      const seqs = stored.filter((e) => e.deviceId === d.id).map((e) => e.seq);
      // Once: the idempotent append refused every resent duplicate.
      expect(new Set(seqs).size).toBe(seqs.length);
      const have = new Set(seqs);
      const missing = [...d.acked].filter((s) => !have.has(s));
      expect(missing).toEqual([]);
    }
  } finally {
    await Promise.all(devices.map((d) => d.client.endAsync(true)));
    await gw.kill('SIGTERM');
  }
});
