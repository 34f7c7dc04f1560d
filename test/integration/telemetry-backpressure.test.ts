/**
 * Bounded memory under a slow Redis (docs/guarantees.md §6): with
 * Redis paused (CLIENT PAUSE WRITE, on every master of a cluster) the producer
 * never holds more than its configured bound, refuses (and counts) the rest,
 * says so (one warning per episode, telemetry_backpressure_refused_total,
 * telemetry_producer_held_entries), and once Redis is back publishes every
 * entry it accepted, exactly once.
 */
import { Cluster, type Redis } from 'ioredis';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { type EncodedEnvelope, encodeEnvelope } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { createRegistry, type Registry } from '#shared/metrics.js';
import { createRedis, waitReady } from '#shared/redis/connect.js';
import { createProducerMetrics, TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import { randomPrefix } from '../harness/prefix.js';
import { readStream } from '../harness/streams.js';
import { forEachTarget } from '../harness/targets.js';

/** The value of one metric in the registry's text format. */
async function metric(registry: Registry, name: string): Promise<number> {
  const line = (await registry.metrics())
    .split('\n')
    .find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return Number(line?.slice(line.lastIndexOf(' ') + 1));
}

forEachTarget('back-pressure', (target) => {
  /** The servers to pause: the one server, or every master of the cluster. */
  const servers = (): Redis[] => {
    const c = target().client;
    return c instanceof Cluster ? c.nodes('master') : [c];
  };

  it('holds at most maxBufferedEntries while Redis is paused, then delivers every accepted entry once', async () => {
    const keys = new Keys(randomPrefix(), 4);
    const client = createRedis(target().config, { failFast: true });
    await waitReady(client, 'test', 5000);
    const bound = 300;
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const registry = createRegistry({}, false);
    const producer = new TelemetryProducer(
      client,
      keys,
      {
        ...producerOptions(),
        batchMaxEntries: 50,
        maxBufferedEntries: bound,
        lingerMs: 2,
        appendTimeoutMs: 500, // the pause outlasts it: batches time out and are retried
        retryMaxDelayMs: 200,
      },
      { logger, metrics: createProducerMetrics(registry) },
    );
    const stream = keys.telemetryStreamFor('dev-paused');
    await Promise.all(servers().map((s) => s.client('PAUSE', 2500, 'WRITE')));

    const accepted: EncodedEnvelope[] = [];
    let maxHeld = 0;
    let refused = 0;
    for (let seq = 1; seq <= 2000; seq++) {
      const e = encodeEnvelope({
        deviceId: 'dev-paused',
        seq,
        time: Date.now(),
        type: 'constant',
        payload: { seq },
      });
      if (producer.offer(e)) accepted.push(e);
      else refused++;
      maxHeld = Math.max(maxHeld, producer.held);
      if (seq % 100 === 0) await new Promise((r) => setTimeout(r, 50)); // ~1 s of sampling while paused
    }
    expect(maxHeld).toBeLessThanOrEqual(bound);
    expect(refused).toBeGreaterThan(0);
    expect(producer.totals.refused).toBe(refused);
    expect(producer.isBackpressured).toBe(true);
    expect(producer.totals.failedBatches).toBeGreaterThan(0); // timed out while paused: retried later
    // The agent says so: in its metrics, and in one warning for the episode (not one per entry).
    expect(await metric(registry, 'telemetry_backpressure_refused_total')).toBe(refused);
    expect(await metric(registry, 'telemetry_producer_held_entries')).toBeLessThanOrEqual(bound);
    expect(await metric(registry, 'telemetry_producer_held_entries')).toBeGreaterThan(0);
    const episode = (l: Record<string, unknown>) => l.episode === 'producer back-pressure (buffer full)';
    expect(lines.filter(episode)).toEqual([
      expect.objectContaining({
        level: 40,
        msg: 'producer back-pressure (buffer full): started',
        limit: bound,
      }),
    ]);

    await Promise.all(servers().map((s) => s.client('UNPAUSE')));
    await producer.flush();
    const stored = await readStream(target().client, stream);
    expect(stored.map((e) => e.seq)).toEqual(accepted.map((e) => e.seq));
    expect(producer.isBackpressured).toBe(false);
    expect(lines.filter(episode).map((l) => [l.level, l.count])).toEqual([
      [40, undefined],
      [30, refused],
    ]);
    expect(await metric(registry, 'telemetry_producer_held_entries')).toBe(0);

    // And publishing resumes for new entries.
    const next = encodeEnvelope({
      deviceId: 'dev-paused',
      seq: 5000,
      time: Date.now(),
      type: 'constant',
      payload: 1,
    });
    expect(producer.offer(next)).toBe(true);
    await producer.flush();
    expect(await target().client.xlen(stream)).toBe(accepted.length + 1);
    client.disconnect();
  });
});
