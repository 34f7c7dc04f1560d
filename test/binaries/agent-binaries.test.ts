/**
 * Every binary that `npm run build:binaries` left in dist/bin (test:binaries
 * builds them first): x64 natively, arm64 and armv7 under qemu user-mode
 * emulation, each through the same end-to-end suite; and the build is
 * repeatable (same inputs, same bytes).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildBinaries, bundleAgent, ROOT } from '../../scripts/binaries/build.js';
import { binaryName, TARGET_NAMES } from '../../scripts/binaries/targets.js';
import { agentBinarySuite } from '../harness/agent-binary.js';

const BIN = join(ROOT, 'dist/bin');

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('dist/bin', () => {
  it('holds one executable per target (run npm run build:binaries first)', () => {
    for (const t of TARGET_NAMES) expect(existsSync(join(BIN, binaryName(t))), binaryName(t)).toBe(true);
  });

  it('is repeatable: the same sources bundle to the same bytes, and one bundle builds identical binaries', async () => {
    const work = mkdtempSync(join(tmpdir(), 'agent-rebuild-'));
    try {
      const [a, b] = [join(work, 'a.cjs'), join(work, 'b.cjs')];
      await bundleAgent(a);
      await bundleAgent(b);
      expect(sha256(readFileSync(b))).toBe(sha256(readFileSync(a)));
      // ioredis's `debug` is the quiet one there too (shared/process/quiet-debug.cjs).
      expect(readFileSync(a, 'utf8')).toContain('off.enabled=!1');
      const builds = [];
      for (const out of ['one', 'two']) {
        const outDir = join(work, out);
        mkdirSync(outDir);
        builds.push(await buildBinaries({ targets: TARGET_NAMES, outDir, bundleFile: a }));
      }
      const sums = builds.map((r) => r.binaries.map((x) => `${x.target} ${x.sha256}`));
      expect(sums[1]).toEqual(sums[0]);
      expect(new Set(sums[0]).size).toBe(TARGET_NAMES.length);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

for (const t of TARGET_NAMES) agentBinarySuite(t, () => join(BIN, binaryName(t)));
