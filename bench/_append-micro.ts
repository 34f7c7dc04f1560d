/**
 * Micro-benchmark of the append script inside Redis: batches of ENTRIES entries of
 * DEVICES devices over PARTITIONS partitions (default 1), as the producer sends them,
 * with and without the state fold. Prints Redis's own µs per call and per entry (INFO
 * commandstats) and its CPU per entry (INFO cpu).
 * `npx tsx bench/_append-micro.ts [devicesPerBatch] [entriesPerBatch] [partitions]`; env APPEND_MICRO_BATCHES
 * (3000), APPEND_MICRO_FOLD=true|false (one mode only). Also prints what the script's own
 * redis.call commands took: the rest of its time is Lua and argument work.
 */
import { Redis } from 'ioredis';
import { encodeEnvelope } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import { startLocalRedis } from '../test/harness/redis-server.js';
import { redisCpuSeconds } from './_redis-info.js';

const DEVICES = Number(process.argv[2] ?? 10);
const ENTRIES = Number(process.argv[3] ?? 10);
const PARTITIONS = Number(process.argv[4] ?? 1);
const BATCHES = Number(process.env.APPEND_MICRO_BATCHES ?? 3000);
const redis = await startLocalRedis();
const client = new Redis(redis.url);
try {
  const folds = process.env.APPEND_MICRO_FOLD ? [process.env.APPEND_MICRO_FOLD === 'true'] : [false, true];
  for (const foldState of folds) {
    const keys = new Keys(`am${foldState ? 1 : 0}`, PARTITIONS);
    const producer = new TelemetryProducer(
      client,
      keys,
      {
        ...producerOptions(),
        batchMaxEntries: ENTRIES,
        lingerMs: 0,
        maxInFlightBatches: 8,
        maxBufferedEntries: 100_000,
        foldState,
      },
      { logger: silentLogger() },
    );
    await client.config('RESETSTAT');
    const cpu = () => redisCpuSeconds(client);
    const cpu0 = await cpu();
    const client0 = process.cpuUsage();
    const seqs = new Map<string, number>();
    for (let b = 0; b < BATCHES; b++) {
      for (let i = 0; i < ENTRIES; i++) {
        const deviceId = `dev-${b % 50}-${i % DEVICES}`;
        const seq = (seqs.get(deviceId) ?? 0) + 1;
        seqs.set(deviceId, seq);
        producer.offer(
          encodeEnvelope({
            deviceId,
            seq: seq,
            time: 1_700_000_000_000 + seq,
            type: seq % 10 ? 'gps' : 'battery',
            payload: { lat: 52.5 + seq / 1e6, lon: 13.4, alt: 120.5, speed: 11.2, heading: 270 },
          }),
        );
      }
      if (b % 100 === 99) await producer.flush();
    }
    await producer.flush();
    const clientCpu = process.cpuUsage(client0);
    const cpuUs = ((await cpu()) - cpu0) * 1e6;
    const stats = await client.info('commandstats');
    const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(stats);
    const calls = Number(m?.[1]);
    const usec = Number(m?.[2]);
    // What the script's own redis.call commands took (counted inside it): the rest is Lua and argument work.
    const inner = ['xadd', 'hmget', 'hset']
      .map((c) => {
        const s = new RegExp(`cmdstat_${c}:calls=(\\d+),usec=(\\d+)`).exec(stats);
        return s
          ? `${c} ${(Number(s[2]) / (BATCHES * ENTRIES)).toFixed(2)} µs/entry (${(Number(s[1]) / BATCHES).toFixed(1)}/batch)`
          : `${c} -`;
      })
      .join(', ');
    console.log(`  inside the script: ${inner}`);
    console.log(
      `foldState=${foldState}: batches of ${ENTRIES} entries (${DEVICES} devices, ${PARTITIONS} partitions): ${calls / BATCHES} calls per batch, ${(usec / calls).toFixed(1)} µs per call, ${(usec / (BATCHES * ENTRIES)).toFixed(2)} µs per entry; Redis CPU ${(cpuUs / (BATCHES * ENTRIES)).toFixed(2)} µs per entry; this process (the producer and envelopes) ${((clientCpu.user + clientCpu.system) / (BATCHES * ENTRIES)).toFixed(2)} µs per entry`,
    );
  }
} finally {
  client.disconnect();
  await redis.destroy();
}
