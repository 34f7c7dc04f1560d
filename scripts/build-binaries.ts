/**
 * `npm run build:binaries [-- --target linux-x64,linux-arm64] [--out DIR]`:
 * the agent as one self-contained executable per board (scripts/binaries/build.ts,
 * docs/binaries.md).
 */
import { parseArgs } from 'node:util';
import { buildBinaries } from './binaries/build.js';
import { isTargetName, TARGET_NAMES, type TargetName } from './binaries/targets.js';

const { values } = parseArgs({
  options: { target: { type: 'string' }, out: { type: 'string' } },
});
const requested = values.target ? values.target.split(',').map((t) => t.trim()) : TARGET_NAMES;
const unknown = requested.filter((t) => !isTargetName(t));
if (unknown.length > 0) {
  process.stderr.write(
    `build-binaries: unknown target ${unknown.join(', ')} (known: ${TARGET_NAMES.join(', ')})\n`,
  );
  process.exit(2);
}
try {
  const result = await buildBinaries({
    targets: requested as TargetName[],
    ...(values.out ? { outDir: values.out } : {}),
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(
    `built ${result.binaries.length} binaries in ${(result.totalMs / 1000).toFixed(1)} s\n`,
  );
} catch (err) {
  process.stderr.write(`build-binaries: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
