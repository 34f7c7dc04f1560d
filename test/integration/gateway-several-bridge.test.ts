import mqtt from 'mqtt';
import { expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import type { AgentProcess } from '../harness/agent-process.js';
import { startGatewayProcessReady } from '../harness/gateway.js';
import { useMosquitto } from '../harness/mosquitto.js';
import { QosPublisher } from '../harness/mqtt-device.js';
import { randomPrefix } from '../harness/prefix.js';
import { useLocalRedis } from '../harness/redis-server.js';
import { readAllTelemetry, waitFor } from '../harness/streams.js';

const redis = useLocalRedis();
const mosquitto = useMosquitto();

const DEVICES = 4;

it('a SIGKILLed bridging gateway that never returns loses nothing mosquitto accepted: another adopts its sessions', async () => {
  const prefix = randomPrefix();
  const keys = new Keys(prefix, 4);
  const flags = (id: string) => ({
    'gateway.mode': 'bridge',
    'gateway.id': id,
    'gateway.leaseTtl': '1500ms',
    'gateway.adoptIdle': '500ms',
    'bridge.url': mosquitto.url,
    'bridge.group': prefix,
    'bridge.connections': 2,
    'redis.url': redis.server.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'log.level': 'info',
  });
  const gateways: AgentProcess[] = [
    await startGatewayProcessReady(flags('gw-a')),
    await startGatewayProcessReady(flags('gw-b')),
  ];
  const devices = await Promise.all(
    Array.from({ length: DEVICES }, async (_, i) => {
      const c = await mqtt.connectAsync(mosquitto.url, {
        clientId: `sb-${i}`,
        clean: false,
        reconnectPeriod: 100,
      });
      return new QosPublisher(`sb-${i}`, c, 4, 5);
    }),
  );
  const acked = () => devices.reduce((n, d) => n + d.acked.size, 0);
  const stored = () => readAllTelemetry(redis.client, keys);
  try {
    await waitFor(async () => (await stored()).length >= 400, 30_000, '400 entries through both gateways');
    // Killed with appends in flight (writes held back a moment): messages it took and never acknowledged.
    await redis.client.client('PAUSE', 1000, 'WRITE');
    await new Promise((r) => setTimeout(r, 300));
    await gateways[0]!.kill('SIGKILL');
    await redis.client.client('UNPAUSE');
    const ackedAtKill = acked();
    await gateways[1]!.waitForLog((l) => l.msg === 'adopted the sessions of a gateway that is gone', 20_000);
    // After the adoption the survivor gets every new message: the stream keeps up with what is accepted.
    await waitFor(async () => acked() >= ackedAtKill + 800, 30_000, '800 more accepted after the kill');
    await Promise.all(devices.map((d) => d.stop()));
    const total = acked();
    const all = await waitFor(
      async () => {
        const s = await stored();
        return s.length >= total && s;
      },
      15_000,
      `all ${total} accepted messages in the stream`,
    );
    for (const d of devices) {
      const seqs = all.filter((e) => e.deviceId === d.id).map((e) => e.seq);
      expect(new Set(seqs).size).toBe(seqs.length);
      const have = new Set(seqs);
      expect([...d.acked].filter((s) => !have.has(s))).toEqual([]);
    }
    expect(all.length).toBe(total);
    // The gone gateway is no longer listed; the survivor is.
    expect(Object.keys(await redis.client.hgetall(keys.gateways()))).toEqual(['gw-b']);
  } finally {
    await Promise.all(devices.map((d) => d.client.endAsync(true)));
    for (const g of gateways) await g.kill('SIGTERM');
  }
}, 120_000);
