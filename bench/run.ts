/**
 * `npm run bench -- NAME`: runs bench/NAME.ts (which exports `run()`), prints
 * its figures as a table with the machine and Node version, and writes
 * bench/results/NAME.json. Files starting with `_` are the benchmarks' helpers.
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
  .map((f) => f.replace(/\.ts$/, ''));

function isRecord(v: unknown): v is BenchResult {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A list of like records (one per step of a scaling run) as a table: one row per record. */
function printTable(title: string, list: BenchResult[]): void {
  const columns = [...new Set(list.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => (typeof v === 'number' ? String(Number(v.toFixed(3))) : String(v ?? ''));
  const widths = columns.map((c) => Math.max(c.length, ...list.map((r) => cell(r[c]).length)));
  const line = (cells: string[]) => `${cells.map((c, i) => c.padStart(widths[i]!)).join('  ')}\n`;
  process.stdout.write(`\n${title}\n${line(columns)}${line(widths.map((w) => '-'.repeat(w)))}`);
  for (const r of list) process.stdout.write(line(columns.map((c) => cell(r[c]))));
}

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
  const tables = Object.entries(result).filter(([, v]) => Array.isArray(v) && v.every(isRecord));
  const rows = Object.entries(result)
    .filter(([, v]) => !tables.some(([, t]) => t === v))
    .map(([key, value]) => ({
      key,
      value: typeof value === 'number' ? Number(value.toFixed(3)) : JSON.stringify(value),
    }));
  const width = Math.max(...rows.map((r) => r.key.length));
  process.stdout.write(`\n${'figure'.padEnd(width)}  value\n${'-'.repeat(width)}  -----\n`);
  for (const r of rows) process.stdout.write(`${r.key.padEnd(width)}  ${r.value}\n`);
  for (const [key, list] of tables) printTable(key, list as BenchResult[]);
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}${name}.json`;
  writeFileSync(file, `${JSON.stringify({ ...result, machine, at: new Date().toISOString() }, null, 2)}\n`);
  process.stdout.write(`\nwrote ${file}\n`);
  process.exit(process.exitCode ?? 0);
}

void main();
