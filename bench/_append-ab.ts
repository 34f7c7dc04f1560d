/**
 * A/B of the idempotent append script inside Redis: this checkout's against
 * another tree's (`--root DIR`, e.g. a `git archive` of an earlier commit),
 * with and without the state fold, in rounds of alternating order against one
 * local redis-server, emptied before each. Prints Redis's CPU per entry (INFO
 * cpu) for each: the machine is noisy, so compare the rounds of one run, never
 * runs with each other.
 * Batches of 22 entries of 22 devices (1,100 devices in all), as the fleet
 * benchmark's gateway sends them.
 * `npx tsx bench/_append-ab.ts --root /tmp/old [--batches 6000] [--rounds 3]`
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { scriptSource } from '#shared/redis/scripts.js';
import { quantile } from '../firmware-sim/ledger.js';
import { startLocalRedis } from '../test/harness/redis-server.js';
import { redisCpuSeconds } from './_redis-info.js';

const { values } = parseArgs({
  options: { root: { type: 'string' }, batches: { type: 'string' }, rounds: { type: 'string' } },
});
if (!values.root) throw new Error('--root DIR (the other tree) is required');
const BATCHES = Number(values.batches ?? 6000);
const ROUNDS = Number(values.rounds ?? 3);
const ENTRIES = 22;

/** A script of the other tree, its includes expanded as shared/redis/scripts.ts does. */
function otherSource(file: string): string {
  const dir = join(values.root!, 'shared/redis/scripts');
  return readFileSync(join(dir, file), 'utf8').replace(/^-- #include (\w+)[ \t]*$/gm, (_l, name: string) =>
    readFileSync(join(dir, 'lib', `${name}.lua`), 'utf8').trimEnd(),
  );
}

const variants = [
  { name: 'this, folded', lua: scriptSource('appendTelemetry-n.lua'), fold: true },
  { name: 'other, folded', lua: otherSource('appendTelemetry-n.lua'), fold: true },
  { name: 'this, no state', lua: scriptSource('appendTelemetry-n.lua'), fold: false },
  { name: 'other, no state', lua: otherSource('appendTelemetry-n.lua'), fold: false },
];
const payload = '{"lat":52.512345,"lon":13.412345,"alt":120.5,"speed":11.2,"heading":270.1,"sats":9}';

const redis = await startLocalRedis();
const client = new Redis(redis.url);
const cpu = () => redisCpuSeconds(client);
const results = new Map<string, number[]>();
try {
  for (let round = 1; round <= ROUNDS; round++) {
    // Each variant against an empty server, and in reverse order every other round, so neither
    // tree gains from going first (memory growth, a warm server).
    for (const v of round % 2 ? variants : [...variants].reverse()) {
      await client.flushall();
      const sha = (await client.script('LOAD', v.lua)) as string;
      const tag = `ab${round}:${v.name.replace(/\W+/g, '')}`;
      const keys = [`${tag}:s`, `${tag}:q`, ...(v.fold ? [`${tag}:st`] : [])];
      const seqs = new Map<string, number>();
      const before = await cpu();
      for (let b = 0; b < BATCHES; b += 50) {
        const pipeline = client.pipeline();
        for (let k = b; k < b + 50; k++) {
          const rows = [];
          for (let i = 0; i < ENTRIES; i++) {
            const dev = `dev-${k % 50}-${i}`;
            const seq = (seqs.get(dev) ?? 0) + 1;
            seqs.set(dev, seq);
            rows.push([
              dev,
              String(seq),
              String(1_700_000_000_000 + seq),
              seq % 10 ? 'gps' : 'battery',
              '1',
              payload,
            ]);
          }
          pipeline.evalsha(sha, keys.length, ...keys, '64', JSON.stringify(rows));
        }
        const replies = await pipeline.exec();
        const failed = replies?.find(([err]) => err);
        if (failed) throw failed[0];
      }
      const us = (((await cpu()) - before) * 1e6) / (BATCHES * ENTRIES);
      results.set(v.name, [...(results.get(v.name) ?? []), us]);
      process.stderr.write(`round ${round}: ${v.name} ${us.toFixed(2)} µs/entry\n`);
    }
  }
  console.log('\nRedis CPU per appended entry (median of the rounds)');
  for (const [name, xs] of results)
    console.log(
      `${name.padEnd(16)} ${quantile(
        [...xs].sort((a, b) => a - b),
        0.5,
      ).toFixed(2)} µs`,
    );
} finally {
  client.disconnect();
  await redis.destroy();
}
