/**
 * `npm run bench -- binaries`: the agent's single-file executables.
 *
 * - build time and size of each binary (the Node download is cached, so this
 *   is the repeat-build time; a first build adds one ~50 MB download per target)
 * - cold start to first published entry: process spawn until the agent's
 *   first entry is in its Redis stream, median of several starts; x64
 *   natively, arm64/armv7 under qemu user-mode emulation (emulation, not a
 *   board: read these as an upper bound and a regression signal), with the
 *   same agent run from source (node + tsx) as the reference in this run
 * - memory at 100 msg/s (constant sensor every 10 ms) on x64: peak and final
 *   RSS, split into private dirty memory (heap, JIT code: what the agent
 *   really costs) and clean file pages of the executable (shared, dropped
 *   and re-read by the kernel under memory pressure); measured as after a
 *   boot (the executable's pages not yet in the page cache) and with the
 *   freshly built file whole in the page cache; same reference.
 */
import type { ChildProcess } from 'node:child_process';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flagName } from '#shared/config/schema.js';
import { Keys } from '#shared/keys.js';
import { quantile } from '../firmware-sim/ledger.js';
import { buildBinaries, ROOT } from '../scripts/binaries/build.js';
import { commandFor, TARGETS, type TargetName } from '../scripts/binaries/targets.js';
import { type RedisServer, startLocalRedis } from '../test/harness/redis-server.js';

const TARGET_LIST: TargetName[] = ['linux-x64', 'linux-arm64', 'linux-armv7l'];
const STARTS_X64 = 7;
const STARTS_EMULATED = 3;
const RSS_SECONDS = 20;

type Command = { cmd: string; args: string[] };

const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;

function agentArgs(options: Record<string, string | number>): string[] {
  return Object.entries(options).flatMap(([k, v]) => [`--${flagName(k)}`, String(v)]);
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
  });
}

/** Spawn to first entry in the stream, in ms. */
async function coldStart(server: RedisServer, command: Command, run: number): Promise<number> {
  const prefix = `bench-bin-${process.pid}-${run}`;
  const deviceId = `cold-${run}`;
  const stream = new Keys(prefix, 4).telemetryStreamFor(deviceId);
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-bin-'));
  const admin = server.client();
  await admin.ping();
  const args = agentArgs({
    'device.id': deviceId,
    'device.dataDir': dataDir,
    'redis.url': server.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    sensors: 'constant',
    'sensors.constant.interval': 10,
    'producer.lingerMs': 1,
  });
  const started = performance.now();
  const child = spawn(command.cmd, [...command.args, ...args], { cwd: ROOT, stdio: 'ignore' });
  try {
    for (;;) {
      if ((await admin.xlen(stream)) > 0) return performance.now() - started;
      if (child.exitCode !== null) throw new Error(`${command.cmd} exited with ${child.exitCode}`);
      if (performance.now() - started > 120_000) throw new Error(`${command.cmd}: no entry in 120 s`);
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    await stop(child);
    admin.disconnect();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface Memory {
  peak_rss_mb: number;
  rss_mb: number;
  private_dirty_mb: number;
  file_mb: number;
  rate_per_s: number;
}

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/**
 * Drops a file's pages from the page cache (GNU dd's documented idiom), so a
 * start maps only the pages it touches, as after a board's boot. A binary
 * just written by the build sits whole in the page cache, and the kernel's
 * fault-around then maps up to 64 KiB of cached neighbours per fault: about
 * 15 MB more RSS that a booted board does not see.
 */
function dropFromPageCache(file: string): void {
  execFileSync('dd', [`of=${file}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0'], {
    stdio: 'ignore',
  });
}

async function memoryAt100Hz(server: RedisServer, command: Command, coldCache: boolean): Promise<Memory> {
  if (coldCache) dropFromPageCache(command.cmd);
  const prefix = `bench-rss-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-rss-'));
  const stream = new Keys(prefix, 4).telemetryStreamFor('rss');
  const admin = server.client();
  const args = agentArgs({
    'device.id': 'rss',
    'device.dataDir': dataDir,
    'redis.url': server.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    sensors: 'constant',
    'sensors.constant.interval': 10,
  });
  const child = spawn(command.cmd, [...command.args, ...args], { cwd: ROOT, stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 2000));
    const from = await admin.xlen(stream);
    await new Promise((r) => setTimeout(r, RSS_SECONDS * 1000));
    const to = await admin.xlen(stream);
    const pid = child.pid!;
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (f: string) => Number(new RegExp(`^${f}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0);
    return {
      peak_rss_mb: mb(statusKb(pid, 'VmHWM')),
      rss_mb: mb(statusKb(pid, 'VmRSS')),
      private_dirty_mb: mb(kb('Private_Dirty')),
      file_mb: mb(statusKb(pid, 'RssFile')),
      rate_per_s: Math.round((to - from) / RSS_SECONDS),
    };
  } finally {
    await stop(child);
    admin.disconnect();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const outDir = mkdtempSync(join(tmpdir(), 'bench-binaries-'));
  const server = await startLocalRedis();
  try {
    const built = await buildBinaries({ targets: TARGET_LIST, outDir });
    const file = (t: TargetName) => built.binaries.find((b) => b.target === t)!.file;
    const source: Command = { cmd: process.execPath, args: ['--import', 'tsx', join(ROOT, 'device/cli.ts')] };
    const x64: Command = { cmd: file('linux-x64'), args: [] };

    const coldX64: number[] = [];
    const coldSource: number[] = [];
    for (let i = 0; i < STARTS_X64; i++) {
      coldX64.push(await coldStart(server, x64, i));
      coldSource.push(await coldStart(server, source, 100 + i));
    }
    const coldEmulated: Record<string, number> = {};
    for (const t of ['linux-arm64', 'linux-armv7l'] as const) {
      const c = commandFor(TARGETS[t], file(t));
      const runs: number[] = [];
      for (let i = 0; i < STARTS_EMULATED; i++)
        runs.push(await coldStart(server, c, (t === 'linux-arm64' ? 200 : 300) + i));
      coldEmulated[t] = Math.round(median(runs));
    }
    // Warm first: the freshly built file is still whole in the page cache.
    const memWarm = await memoryAt100Hz(server, x64, false);
    const mem = await memoryAt100Hz(server, x64, true);
    const memSource = await memoryAt100Hz(server, source, false);

    return {
      size_mb: Object.fromEntries(built.binaries.map((b) => [b.target, mb(b.bytes / 1024)])),
      node_version: Object.fromEntries(built.binaries.map((b) => [b.target, b.nodeVersion])),
      build_s: Math.round(built.totalMs / 100) / 10,
      build_s_per_target: Object.fromEntries(
        built.binaries.map((b) => [b.target, Math.round(b.ms / 100) / 10]),
      ),
      bundle_kb: Math.round(built.bundle.bytes / 1024),
      cold_start_ms_x64: Math.round(median(coldX64)),
      cold_start_ms_source: Math.round(median(coldSource)),
      cold_start_ratio_x64_vs_source: Math.round((median(coldX64) / median(coldSource)) * 100) / 100,
      cold_start_ms_emulated: coldEmulated,
      rss_mb_x64_100hz: mem.rss_mb,
      peak_rss_mb_x64_100hz: mem.peak_rss_mb,
      private_dirty_mb_x64_100hz: mem.private_dirty_mb,
      file_backed_mb_x64_100hz: mem.file_mb,
      rate_per_s_x64: mem.rate_per_s,
      rss_mb_x64_100hz_warm_page_cache: memWarm.rss_mb,
      file_backed_mb_x64_100hz_warm_page_cache: memWarm.file_mb,
      rss_mb_source_100hz: memSource.rss_mb,
      private_dirty_mb_source_100hz: memSource.private_dirty_mb,
      rss_ratio_x64_vs_source: Math.round((mem.rss_mb / memSource.rss_mb) * 100) / 100,
      goals: { cold_start_ms_x64: '< 500', rss_mb_x64_100hz: '< 60' },
    };
  } finally {
    await server.destroy();
    rmSync(outDir, { recursive: true, force: true });
  }
}
