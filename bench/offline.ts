/**
 * Store-and-forward benchmark (issue 4). In one run, with the same ~120-byte
 * entries and the agent's default producer and journal options:
 *   live_per_s           the live path: idempotent batched appends to a fresh local Redis
 *   journal_write_per_s  appends to the disk journal (fsync per written batch, the default)
 *   replay_per_s         draining that journal to Redis after the "outage" (journal.replayRate 0 = unbounded)
 * and the ratios the issue asks about: replay / live (goal >= 0.5) and
 * journal write / live (goal > 1: an outage never slows sampling).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '#shared/clock.js';
import type { ConfigOf } from '#shared/config/schema.js';
import { type EncodedEnvelope, encodeEnvelope } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRedis, waitReady } from '#shared/redis/connect.js';
import { type RedisSchema, redisSchema } from '#shared/redis/options.js';
import { TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import { Journal } from '../device/journal/journal.js';
import { journalOptions } from '../device/journal/options.js';
import { Replayer } from '../device/journal/replayer.js';
import { replayChunk } from '../device/journal/store-and-forward.js';
import { startLocalRedis } from '../test/harness/redis-server.js';

const COUNT = 200_000;
const WARMUP = 20_000;
const PAYLOAD = 120;

function entries(device: string, from: number, n: number): EncodedEnvelope[] {
  const payload = { x: 'a'.repeat(PAYLOAD - 8) };
  return Array.from({ length: n }, (_, i) =>
    encodeEnvelope({
      deviceId: device,
      seq: from + i,
      time: 1_700_000_000_000 + from + i,
      type: 'constant',
      payload,
    }),
  );
}

export async function run(): Promise<Record<string, unknown>> {
  const redis = await startLocalRedis();
  const dir = mkdtempSync(join(tmpdir(), 'bench-offline-'));
  const logger = silentLogger();
  const keys = new Keys('bench', redisSchema['redis.partitions'].default);
  const url = redis.url;
  const client = createRedis(redisConfig(url), { failFast: true });
  try {
    await waitReady(client, url, 10_000);
    const opts = producerOptions();

    // Live: offer as fast as the producer takes entries (it refuses when its buffer is full).
    const live = async (device: string, n: number): Promise<number> => {
      const producer = new TelemetryProducer(client, keys, opts, { logger });
      const batch = entries(device, 1, n);
      const t0 = performance.now();
      for (const e of batch) {
        while (!producer.offer(e)) await producer.whenRoom();
      }
      await producer.flush();
      return n / ((performance.now() - t0) / 1000);
    };
    await live('warm-live', WARMUP);
    const livePerS = await live('live', COUNT);

    // Journal write: the entries of an outage, appended one by one as the sampler would.
    const { journal: jOpts } = journalOptions({ 'journal.maxBytes': 1024 * 1024 * 1024 }, dir);
    const journal = Journal.open(jOpts, { logger });
    const outage = entries('offline', 1, COUNT);
    const t1 = performance.now();
    for (const e of outage) journal.append([e]);
    journal.writeBuffered();
    const journalPerS = COUNT / ((performance.now() - t1) / 1000);

    // Replay: drain the journal to Redis, unbounded rate.
    let replayer: Replayer | undefined;
    const replayProducer = new TelemetryProducer(client, keys, opts, {
      logger,
      hooks: {
        onFailed: (failed) => {
          replayer?.batchFailed(failed);
          return true;
        },
      },
    });
    replayer = new Replayer(
      journal,
      { mode: 'beside-live', rate: 0 },
      {
        logger,
        clock: systemClock,
        producer: replayProducer,
        chunkMax: replayChunk(opts),
        connected: () => client.status === 'ready',
        mayReplay: () => true,
      },
    );
    const t2 = performance.now();
    replayer.start();
    while (journal.unsent > 0) await new Promise((r) => setTimeout(r, 5));
    const replayPerS = COUNT / ((performance.now() - t2) / 1000);
    await replayer.stop(1000);
    journal.close();
    const stored = await client.xlen(keys.telemetryStreamFor('offline'));
    if (stored !== COUNT) throw new Error(`replay stored ${stored} of ${COUNT} entries`);

    return {
      entries: COUNT,
      payload_bytes: PAYLOAD,
      live_per_s: livePerS,
      journal_write_per_s: journalPerS,
      replay_per_s: replayPerS,
      replay_vs_live: replayPerS / livePerS,
      journal_write_vs_live: journalPerS / livePerS,
      fsync: jOpts.fsync,
    };
  } finally {
    client.disconnect();
    await redis.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

function redisConfig(url: string): ConfigOf<RedisSchema> {
  const defaults = Object.fromEntries(Object.entries(redisSchema).map(([k, spec]) => [k, spec.default]));
  return { ...(defaults as ConfigOf<RedisSchema>), 'redis.url': url };
}
