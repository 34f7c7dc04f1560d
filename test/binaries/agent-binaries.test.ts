/**
 * Every binary that `npm run build:binaries` left in dist/bin (test:binaries
 * builds them first): x64 natively, arm64 and armv7 under qemu user-mode
 * emulation, each through the same end-to-end suite; and the build is
 * repeatable (a second build from the same tree gives the same bytes).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildBinaries, ROOT } from '../../scripts/binaries/build.js';
import { binaryName, TARGET_NAMES } from '../../scripts/binaries/targets.js';
import { agentBinarySuite } from '../harness/agent-binary.js';

const BIN = join(ROOT, 'dist/bin');

interface Manifest {
  binaries: Array<{ target: string; sha256: string }>;
}

describe('dist/bin', () => {
  it('holds one executable per target (run npm run build:binaries first)', () => {
    for (const t of TARGET_NAMES) expect(existsSync(join(BIN, binaryName(t))), binaryName(t)).toBe(true);
  });

  it('a second build of the same tree gives byte-identical binaries', async () => {
    const manifest = JSON.parse(readFileSync(join(BIN, 'manifest.json'), 'utf8')) as Manifest;
    const outDir = mkdtempSync(join(tmpdir(), 'agent-rebuild-'));
    try {
      const again = await buildBinaries({ targets: TARGET_NAMES, outDir });
      expect(again.binaries.map((b) => ({ target: b.target, sha256: b.sha256 }))).toEqual(
        manifest.binaries.map((b) => ({ target: b.target, sha256: b.sha256 })),
      );
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  });
});

for (const t of TARGET_NAMES) agentBinarySuite(t, () => join(BIN, binaryName(t)));
