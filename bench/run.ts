/**
 * `npm run bench -- NAME`: runs bench/NAME.ts (which exports `run()`), prints
 * its figures as a table with the machine and Node version, and writes
 * bench/results/NAME.json.
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

export type BenchResult = Record<string, unknown>;

const here = fileURLToPath(new URL('.', import.meta.url));
const available = readdirSync(here)
  .filter(
    (f) => f.endsWith('.ts') && !['run.ts'].includes(f) && !f.includes('.'.repeat(2)) && !f.startsWith('_'),
  )
  .map((f) => f.replace(/\.ts$/, ''))
  .filter((n) => !n.includes('-'));

async function main(): Promise<void> {
  const name = process.argv[2];
  if (!name || !available.includes(name)) {
    process.stderr.write(`usage: npm run bench -- NAME\navailable: ${available.join(', ')}\n`);
    process.exit(2);
  }
  const machine = {
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memory_gb: Math.round(totalmem() / 2 ** 30),
  };
  process.stderr.write(`bench ${name} on ${machine.cpu} x${machine.cores}, node ${machine.node}\n`);
  const mod = (await import(`./${name}.ts`)) as { run: () => Promise<BenchResult> };
  const result = await mod.run();
  const rows = Object.entries(result).map(([key, value]) => ({
    key,
    value: typeof value === 'number' ? Number(value.toFixed(3)) : JSON.stringify(value),
  }));
  const width = Math.max(...rows.map((r) => r.key.length));
  process.stdout.write(`\n${'figure'.padEnd(width)}  value\n${'-'.repeat(width)}  -----\n`);
  for (const r of rows) process.stdout.write(`${r.key.padEnd(width)}  ${r.value}\n`);
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}${name}.json`;
  writeFileSync(file, `${JSON.stringify({ ...result, machine, at: new Date().toISOString() }, null, 2)}\n`);
  process.stdout.write(`\nwrote ${file}\n`);
  process.exit(process.exitCode ?? 0);
}

void main();
