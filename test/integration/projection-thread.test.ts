/**
 * The projection as the gateway runs it by default: on a worker thread with
 * its own Redis connection. Its state writes reach Redis, its counters reach
 * the gateway's metrics, what it drops shows in /healthz, and stopping the
 * gateway stops the thread.
 */
import type { Worker } from 'node:worker_threads';
import { expect, it } from 'vitest';
import { encodeEnvelope, envelopeFields } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRegistry } from '#shared/metrics.js';
import { readDeviceState } from '#shared/state.js';
import { projectionFactories } from '../../gateway/projection/factory.js';
import { ProjectionThread } from '../../gateway/projection/thread.js';
import { gatewayConfig, startGateway } from '../harness/gateway.js';
import { freePort } from '../harness/ports.js';
import { randomPrefix } from '../harness/prefix.js';
import { useLocalRedis } from '../harness/redis-server.js';
import { waitFor } from '../harness/streams.js';

const local = useLocalRedis();

const counter = async (text: string, name: string): Promise<number> =>
  Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(text)?.[1] ?? 0);

it('folds entries on its thread into the state hashes and reports its counters to the gateway', async () => {
  const prefix = randomPrefix();
  const keys = new Keys(prefix, 4);
  const metricsPort = await freePort();
  const gw = await startGateway(
    {
      'metrics.port': metricsPort,
      'redis.url': local.server.url,
      'redis.keyPrefix': prefix,
      'redis.partitions': 4,
      'projection.interval': 100,
    },
    { services: projectionFactories({ 'projection.enabled': true, 'projection.thread': true }) },
  );
  try {
    for (let seq = 1; seq <= 30; seq++) {
      const e = encodeEnvelope({
        deviceId: 'th-1',
        seq,
        time: 1_700_000_000_000 + seq,
        type: 'temp',
        payload: { seq },
      });
      await local.client.xadd(keys.telemetryStreamFor('th-1'), '*', ...envelopeFields(e));
    }
    await waitFor(
      async () => (await readDeviceState(local.client, keys, 'th-1'))?.readings.temp?.seq === 30,
      10_000,
      'the newest reading in the state hash',
    );
    // Counters arrive with the thread's next report (every second).
    const get = (path: string) => fetch(`http://127.0.0.1:${metricsPort}${path}`);
    await waitFor(
      async () =>
        counter(await (await get('/metrics')).text(), 'projection_entries_total').then((n) => n === 30),
      10_000,
      'entries counted in the gateway metrics',
    );
    expect((await get('/healthz')).status).toBe(200);
    // An entry it cannot decode: counted, and the gateway is unhealthy while the projection drops.
    await local.client.xadd(keys.telemetryStream(0), '*', 'd', 'bad-one', 's', 'x');
    await waitFor(async () => (await get('/healthz')).status === 503, 10_000, 'unhealthy');
    const body = (await (await get('/healthz')).json()) as { reasons: Array<{ code: string }> };
    expect(body.reasons.map((r) => r.code)).toEqual(['projection-dropped']);
    // Its own connection: named for it, beside the gateway's.
    const names = (await local.client.client('LIST')) as string;
    expect(names).toMatch(/name=projection:/);
  } finally {
    await gw.stop();
  }
  // Stopped with the gateway: its connection is gone.
  await waitFor(
    async () => !/name=projection:/.test((await local.client.client('LIST')) as string),
    10_000,
    'thread gone',
  );
});

it('a thread that dies reports the gateway unhealthy, and stopping it afterwards returns at once', async () => {
  const config = gatewayConfig({
    'redis.url': local.server.url,
    'redis.keyPrefix': randomPrefix(),
    'redis.partitions': 4,
  });
  const thread = new ProjectionThread(
    { config, consumer: 'dies', gatewayId: 'gw-dies', logLevel: 'silent' },
    createRegistry({}, false),
    silentLogger(),
  );
  await thread.start();
  expect(thread.health().healthy).toBe(true);
  // Kill the thread from outside, as a fatal error inside it would.
  await (thread as unknown as { worker: Worker }).worker.terminate();
  await waitFor(async () => !thread.health().healthy, 5000, 'unhealthy');
  expect(thread.health().reasons.map((r) => r.code)).toEqual(['projection-stopped']);
  expect(thread.health().reasons[0]?.message).toMatch(/projection thread exited/);
  const started = Date.now();
  await thread.stop();
  expect(Date.now() - started).toBeLessThan(1000);
});
