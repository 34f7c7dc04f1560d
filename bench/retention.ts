/**
 * Retention and projection benchmark (issue 5). In one run, against one fresh
 * local Redis holding 1,000,000 telemetry entries over 32 partitions
 * (10,000 devices, 3 reading types, ~40-byte payloads, as agents write them):
 *   bytes_per_entry        MEMORY USAGE (exact) of the partitions / entries
 *   mib_per_million        the same per million entries
 *   drain_per_s            raw XREADGROUP (all partitions per round, the projection's COUNT) + XACK of every entry
 *   projection_per_s       the projection folding the same entries into state hashes (same read shape)
 *   projection_vs_drain    the ratio (goal >= 0.5)
 *   trim_pass_ms           a retention pass over the 32 partitions (+4 shared streams) that trims
 *                          1000 entries per partition by length, two consumer groups present (median)
 *   trim_pass_idle_ms      a pass with nothing to trim (median; the usual periodic case)
 */
import { encodeEnvelope, envelopeFields } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRedis, waitReady } from '#shared/redis/connect.js';
import { projectionOptions } from '../gateway/projection/options.js';
import { ProjectionService } from '../gateway/projection/service.js';
import { retentionOptions } from '../gateway/retention/options.js';
import { RetentionService } from '../gateway/retention/service.js';
import { startLocalRedis } from '../test/harness/redis-server.js';
import { baseRedisConfig } from '../test/harness/targets.js';

const PARTITIONS = 32;
const ENTRIES = 1_000_000;
const DEVICES = 10_000;
const TYPES = ['temperature', 'humidity', 'battery'];
/** Both the drain and the projection read with the projection's default COUNT. */
const BATCH = projectionOptions().batchSize;

type ReadReply = Array<[string, Array<[string, string[]]>]> | null;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function run(): Promise<Record<string, unknown>> {
  const server = await startLocalRedis();
  const client = createRedis(baseRedisConfig(server.url));
  try {
    await waitReady(client, server.url, 10_000);
    const keys = new Keys('bench', PARTITIONS);
    const streams = keys.allTelemetryStreams();

    // Fill: entries in device order per round, so each device's sequence numbers rise.
    const t0 = Date.now();
    const perDevice = ENTRIES / DEVICES;
    for (let round = 0; round < perDevice; round++) {
      const pipe = client.pipeline();
      for (let d = 0; d < DEVICES; d++) {
        const deviceId = `dev-${String(d).padStart(5, '0')}`;
        const seq = round + 1;
        const e = encodeEnvelope({
          deviceId,
          seq,
          time: t0 + seq * 1000,
          type: TYPES[(d + round) % TYPES.length]!,
          payload: { v: Math.round(Math.random() * 10000) / 100, q: 1 },
        });
        pipe.xadd(keys.telemetryStreamFor(deviceId), '*', ...envelopeFields(e));
      }
      await pipe.exec();
    }
    const fillS = (Date.now() - t0) / 1000;

    let bytes = 0;
    let length = 0;
    for (const s of streams) {
      bytes += Number(await client.memory('USAGE', s, 'SAMPLES', 0));
      length += await client.xlen(s);
    }
    if (length !== ENTRIES) throw new Error(`filled ${length} entries, expected ${ENTRIES}`);

    // Raw drain: the reference, with the projection's read shape.
    for (const s of streams) await client.xgroup('CREATE', s, 'drain', '0');
    const d0 = performance.now();
    let drained = 0;
    for (;;) {
      const batches = await Promise.all(
        streams.map(async (s) => {
          const reply = (await client.xreadgroup(
            'GROUP',
            'drain',
            'c1',
            'COUNT',
            BATCH,
            'STREAMS',
            s,
            '>',
          )) as ReadReply;
          return { s, ids: reply?.[0]?.[1].map(([id]) => id) ?? [] };
        }),
      );
      const n = batches.reduce((m, b) => m + b.ids.length, 0);
      if (n === 0) break;
      await Promise.all(batches.filter((b) => b.ids.length).map((b) => client.xack(b.s, 'drain', ...b.ids)));
      drained += n;
    }
    const drainS = (performance.now() - d0) / 1000;

    const projection = new ProjectionService(
      client,
      keys,
      { ...projectionOptions(), consumer: 'bench', batchSize: BATCH },
      { logger: silentLogger() },
    );
    await projection.ensureGroups();
    const p0 = performance.now();
    const projected = await projection.drain();
    const projectionS = (performance.now() - p0) / 1000;
    if (projected !== ENTRIES || drained !== ENTRIES)
      throw new Error(`drained ${drained}, projected ${projected}, expected ${ENTRIES}`);

    // Trim passes: each removes 1000 entries per partition by length; both groups are caught up.
    const passes: number[] = [];
    let perPartition = ENTRIES / PARTITIONS;
    for (let i = 0; i < 9; i++) {
      perPartition -= 1000;
      const retention = new RetentionService(
        client,
        keys,
        retentionOptions({
          'retention.telemetry.maxAge': 0,
          'retention.telemetry.maxLen': perPartition,
          'retention.telemetry.maxBytes': 0,
        }),
        { logger: silentLogger() },
      );
      const report = await retention.runPass();
      if (report.trimmed !== 1000 * PARTITIONS) throw new Error(`a pass trimmed ${report.trimmed}`);
      passes.push(report.durationMs);
    }
    const idle = new RetentionService(client, keys, retentionOptions({}), { logger: silentLogger() });
    const idlePasses: number[] = [];
    for (let i = 0; i < 9; i++) idlePasses.push((await idle.runPass()).durationMs);

    const drainPerS = ENTRIES / drainS;
    const projectionPerS = ENTRIES / projectionS;
    return {
      entries: ENTRIES,
      partitions: PARTITIONS,
      devices: DEVICES,
      fill_per_s: Math.round(ENTRIES / fillS),
      bytes_per_entry: bytes / ENTRIES,
      mib_per_million: bytes / ENTRIES / 1.048576,
      drain_per_s: Math.round(drainPerS),
      projection_per_s: Math.round(projectionPerS),
      projection_vs_drain: projectionPerS / drainPerS,
      trim_pass_ms: median(passes),
      trim_pass_idle_ms: median(idlePasses),
      goals: { projection_vs_drain: '>= 0.5', trim_pass_ms: '< 50' },
    };
  } finally {
    client.disconnect();
    await server.destroy();
  }
}
