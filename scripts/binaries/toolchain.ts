/**
 * The Debian packages a binary build (and the emulated tests) need, installed
 * with apt-get when missing: the build machine is root and reaches Debian's
 * archive, and a fresh CI machine has none of them.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Target } from './targets.js';

interface Need {
  /** A command on PATH or an absolute file that the package provides. */
  readonly provides: string;
  readonly pkg: string;
}

function needsOf(target: Target): Need[] {
  const needs: Need[] = [{ provides: target.strip, pkg: target.strip === 'strip' ? 'binutils' : 'llvm' }];
  if (target.name === 'linux-arm64') {
    needs.push(
      { provides: 'qemu-aarch64-static', pkg: 'qemu-user-static' },
      { provides: '/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1', pkg: 'libc6-arm64-cross' },
      { provides: '/usr/aarch64-linux-gnu/lib/libstdc++.so.6', pkg: 'libstdc++6-arm64-cross' },
    );
  }
  if (target.name === 'linux-armv7l') {
    needs.push(
      { provides: 'qemu-arm-static', pkg: 'qemu-user-static' },
      { provides: '/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3', pkg: 'libc6-armhf-cross' },
      { provides: '/usr/arm-linux-gnueabihf/lib/libstdc++.so.6', pkg: 'libstdc++6-armhf-cross' },
      { provides: '/usr/arm-linux-gnueabihf/lib/libatomic.so.1', pkg: 'libatomic1-armhf-cross' },
    );
  }
  return needs;
}

function present(what: string): boolean {
  if (what.startsWith('/')) return existsSync(what);
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, what)));
}

/** Packages missing for these targets (empty when all is there). */
export function missingPackages(targets: readonly Target[]): string[] {
  const missing = new Set<string>();
  for (const t of targets) for (const n of needsOf(t)) if (!present(n.provides)) missing.add(n.pkg);
  return [...missing].sort();
}

/** Installs what is missing with apt-get (update first: a fresh machine has no package lists). */
export function ensureToolchain(targets: readonly Target[], log: (line: string) => void): void {
  const missing = missingPackages(targets);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `missing Debian packages ${missing.join(' ')}: run "apt-get install ${missing.join(' ')}" as root`,
    );
  }
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
}
