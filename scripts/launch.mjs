/**
 * `node scripts/launch.mjs <program> [args]`: runs a long-running program
 * (`npm run gateway`, `npm run sim`, `npm run agent`) from one bundle of its
 * sources, made at start (shared/process/bundle.mjs, under a second), instead
 * of under tsx. tsx keeps a module-hooks thread and every transformed module
 * for the life of the process: about 22 MB of the gateway's RSS, for nothing
 * once it has started. The bundle is written to dist/<program>.mjs (through a
 * temporary file and a rename, so processes starting together never read half
 * of one) and imported in this process: signals and exit codes are the program's.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { bundleModule } from '../shared/process/bundle.mjs';

const PROGRAMS = {
  gateway: 'gateway/cli.ts',
  sim: 'firmware-sim/cli.ts',
  agent: 'device/cli.ts',
};

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const [name] = process.argv.splice(2, 1);
const entry = name !== undefined && Object.hasOwn(PROGRAMS, name) ? PROGRAMS[name] : undefined;
if (entry === undefined) {
  process.stderr.write(
    `launch: unknown program ${name ?? '(none)'} (known: ${Object.keys(PROGRAMS).join(', ')})\n`,
  );
  process.exit(2);
}
const file = join(ROOT, 'dist', `${name}.mjs`);
mkdirSync(dirname(file), { recursive: true });
const partial = `${file}.${process.pid}.tmp`;
writeFileSync(partial, await bundleModule(join(ROOT, entry)));
renameSync(partial, file);
// The program reads its arguments from argv[2] on, as when node runs it directly.
process.argv[1] = file;
await import(pathToFileURL(file).href);
