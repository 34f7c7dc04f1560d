/**
 * The x64 single-file agent, built fresh from the tree (scripts/binaries),
 * end to end against a real Redis. The ARM binaries run the same suite under
 * qemu in `npm run test:binaries` (test/binaries/).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { buildBinaries } from '../../scripts/binaries/build.js';
import { agentBinarySuite } from '../harness/agent-binary.js';

let outDir: string;
let file = '';
beforeAll(async () => {
  outDir = mkdtempSync(join(tmpdir(), 'agent-build-'));
  const result = await buildBinaries({ targets: ['linux-x64'], outDir });
  file = result.binaries[0]!.file;
}, 180_000);
afterAll(() => {
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

agentBinarySuite('linux-x64', () => file);
