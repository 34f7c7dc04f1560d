/**
 * Micro-benchmark of the latest-state projection's read-back: ENTRIES drone
 * readings (DEVICES devices, 16 partitions) appended to a local redis-server,
 * then ProjectionService.drain() in this process. Prints µs per entry of this
 * process's CPU and of the wall clock. `npx tsx bench/_projection-micro.ts [entries]`
 * (add --cpu-prof through node --import tsx for a profile).
 */
import { Redis } from 'ioredis';
import { encodeEnvelope } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { defineScripts } from '#shared/redis/scripts.js';
import { encodeBatch } from '#shared/telemetry/producer.js';
import { projectionOptions } from '../gateway/projection/options.js';
import { ProjectionService } from '../gateway/projection/service.js';
import { startLocalRedis } from '../test/harness/redis-server.js';

const ENTRIES = Number(process.argv[2] ?? 200_000);
const DEVICES = 2000;
const redis = await startLocalRedis();
const client = new Redis(redis.url);
const keys = new Keys('pm', 16);
try {
  defineScripts(client);
  const seqs = new Map<string, number>();
  for (let done = 0; done < ENTRIES; ) {
    const byPart = new Map<number, ReturnType<typeof encodeEnvelope>[]>();
    for (let i = 0; i < 2000 && done < ENTRIES; i++, done++) {
      const d = `d-m-${done % DEVICES}`;
      const seq = (seqs.get(d) ?? 0) + 1;
      seqs.set(d, seq);
      const e = encodeEnvelope({
        deviceId: d,
        seq,
        time: Date.now(),
        type: done % 11 === 0 ? 'battery' : 'gps',
        payload: {
          lat: 52.520008 + i * 1e-6,
          lon: 13.404954,
          alt: 80.4,
          spd: 12.35,
          hdg: 271.3,
          ph: 'outbound',
        },
      });
      const p = keys.partitionOf(d);
      byPart.set(p, [...(byPart.get(p) ?? []), e]);
    }
    const pipe = client.pipeline() as unknown as {
      appendTelemetryRaw(numberOfKeys: number, ...a: (string | number)[]): void;
      exec(): Promise<unknown>;
    };
    for (const [p, group] of byPart)
      pipe.appendTelemetryRaw(1, keys.telemetryStream(p), 0, encodeBatch(group));
    await pipe.exec();
  }
  const projection = new ProjectionService(
    client,
    keys,
    projectionOptions({ 'projection.consumer': 'bench', 'projection.interval': 0 }),
    { logger: silentLogger() },
  );
  await projection.ensureGroups();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const n = await projection.drain();
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(
    `projection: ${n} entries, ${(((cpu.user + cpu.system) / n) * 1).toFixed(2)} µs CPU and ${((wall * 1000) / n).toFixed(2)} µs wall per entry\n`,
  );
} finally {
  client.disconnect();
  await redis.destroy();
}
