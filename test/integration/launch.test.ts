/**
 * scripts/launch.mjs: what `npm run gateway|sim|agent` run. Every test that starts a
 * gateway or the simulator as a process goes through it (test/harness/agent-process.ts);
 * these cover what those do not.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('launch', () => {
  it('refuses an unknown program, naming the known ones, with exit code 2', async () => {
    const err = await run(process.execPath, ['scripts/launch.mjs', 'gatway']).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toContain(
      'unknown program gatway (known: gateway, sim, agent)',
    );
  });

  it('runs the program with its arguments from one bundle of its sources and packages, without tsx', async () => {
    const { stdout } = await run(process.execPath, ['scripts/launch.mjs', 'agent', '--help']);
    expect(stdout).toMatch(/^Usage: agent /);
    const bundle = readFileSync('dist/agent.mjs', 'utf8');
    // Packages are inside it, and our sources keep their own URLs (the Lua scripts are read beside them).
    expect(bundle).toContain('node_modules/ioredis/');
    expect(bundle).toMatch(/file:\/\/[^"]*\/shared\/redis\/scripts\.ts/);
    expect(bundle).not.toMatch(/from ["']tsx/);
    // Every package's `debug` is the quiet one (shared/process/quiet-debug.cjs), which loads the real one.
    expect(bundle).toContain('shared/process/quiet-debug.cjs');
  });

  it('hands the program exactly its own arguments (a subcommand stays the first)', async () => {
    const child = execFile(process.execPath, ['scripts/launch.mjs', 'gateway', 'hash-password'], {
      timeout: 20_000,
    });
    child.stdin?.end('secret');
    const out = await new Promise<string>((resolve, reject) => {
      let text = '';
      child.stdout?.on('data', (d: Buffer) => {
        text += d.toString();
      });
      child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`exit ${code}: ${text}`))));
    });
    expect(out.trim()).toMatch(/^scrypt\$/);
  });
});
