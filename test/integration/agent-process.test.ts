/**
 * The agent as users run it: a child process. Its sequence continues across
 * restarts (clean and crashed) so nothing new is refused as a duplicate, and
 * bad config or an unreachable Redis give one clear message, not a stack trace.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import { startAgentProcess } from '../harness/agent-process.js';
import { freePort } from '../harness/ports.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { readStream, waitFor } from '../harness/streams.js';
import { forEachTarget } from '../harness/targets.js';

let server: RedisServer;
beforeAll(async () => {
  server = await startRedis({ local: true });
});
afterAll(async () => {
  await server.destroy();
});

const isStoppedLine = (l: Record<string, unknown>) => l.msg === 'agent stopped';

forEachTarget('agent restarts', (target) => {
  it('continues its sequence after a clean stop and after SIGKILL; nothing new is refused', async () => {
    const t = target();
    const prefix = randomPrefix();
    const keys = new Keys(prefix, 4);
    const dataDir = mkdtempSync(join(tmpdir(), 'agent-seq-'));
    const options = {
      'device.id': 'dev-restart',
      'device.dataDir': dataDir,
      'device.sequenceBlock': 50,
      'redis.url': t.config['redis.url'],
      ...(t.config['redis.cluster']
        ? { 'redis.cluster': true, 'redis.clusterNodes': t.config['redis.clusterNodes'].join(',') }
        : {}),
      'redis.keyPrefix': prefix,
      'redis.partitions': 4,
      sensors: 'constant',
      'sensors.constant.interval': 5,
    };
    const stream = keys.telemetryStreamFor('dev-restart');
    const admin = t.client;
    const lengthAtLeast = (n: number) =>
      waitFor(async () => (await admin.xlen(stream)) >= n, 20_000, `${n} entries`);

    let agent = startAgentProcess(options);
    await lengthAtLeast(60);
    expect(await agent.kill('SIGTERM')).toBe(0);
    const firstStop = agent.logs().find(isStoppedLine);
    expect(firstStop?.duplicates).toBe(0);

    agent = startAgentProcess(options);
    const afterClean = await admin.xlen(stream);
    await lengthAtLeast(afterClean + 60);
    await agent.kill('SIGKILL');

    agent = startAgentProcess(options);
    const afterCrash = await admin.xlen(stream);
    await lengthAtLeast(afterCrash + 60);
    expect(await agent.kill('SIGTERM')).toBe(0);
    expect(agent.logs().find(isStoppedLine)?.duplicates).toBe(0);

    const seqs = (await readStream(admin, stream)).map((e) => e.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
    // A clean stop leaves no gap; a crash leaves at most one reserved block.
    const gaps = seqs
      .slice(1)
      .map((s, i) => s - seqs[i]! - 1)
      .filter((g) => g > 0);
    expect(gaps.length).toBeLessThanOrEqual(1);
    for (const g of gaps) expect(g).toBeLessThanOrEqual(50);
  });
});

describe('clear messages for user mistakes', () => {
  const runAgent = (args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'device/cli.ts', ...args], {
      encoding: 'utf8',
      timeout: 20_000,
    });
  const noStack = (text: string) => expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);

  it('answers --version and --help', () => {
    const version = runAgent(['--version']);
    expect(version.status).toBe(0);
    expect(version.stdout).toMatch(/^agent \d+\.\d+\.\d+ \(node v\d+/);
    const help = runAgent(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--device-id  [AGENT_DEVICE_ID]');
    expect(help.stdout).toContain('--producer-durability  [AGENT_PRODUCER_DURABILITY]  default: local');
  });

  it('rejects a malformed option naming the option, its source and what is expected', () => {
    const r = runAgent(['--device-id', 'd1', '--producer-batch-max-entries', 'lots']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(
      'agent: config option "producer.batchMaxEntries" (from flag --producer-batch-max-entries) must be an integer, got "lots"',
    );
    noStack(r.stderr);
  });

  it('refuses a stray argument instead of ignoring it', () => {
    const r = runAgent(['--device-id', 'x', 'extra']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unexpected argument "extra": every option is --name value/);
    noStack(r.stderr);
  });

  it('names a missing device id and how to set it', () => {
    const r = runAgent([]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('"device.id"');
    expect(r.stderr).toContain('--device-id');
    noStack(r.stderr);
  });

  it('rejects unknown keys and bad values in a config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agent-cfg-'));
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, 'device:\n  id: d1\nproducer:\n  lingerMs: soon\n');
    let r = runAgent(['--config', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`"producer.lingerMs" (from ${file}) must be a duration`);
    writeFileSync(file, 'device:\n  id: d1\n  colour: red\n');
    r = runAgent(['--config', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('"device.colour"');
    expect(r.stderr).toContain('is not a known option');
    noStack(r.stderr);
  });

  it('reports an unreachable Redis in one clear line and keeps sampling', async () => {
    const port = await freePort(); // nothing listens there
    const agent = startAgentProcess({
      'device.id': 'dev-offline',
      'device.dataDir': mkdtempSync(join(tmpdir(), 'agent-off-')),
      'redis.url': `redis://127.0.0.1:${port}`,
      'redis.connectTimeout': 500,
      'agent.shutdownTimeout': 200,
      sensors: 'constant',
    });
    const line = await agent.waitForLog((l) => l.level === 50);
    expect(String(line.msg)).toContain(`cannot reach Redis at redis://127.0.0.1:${port}`);
    expect(String(line.msg)).toContain('Check redis.url');
    expect(line.err).toBeUndefined();
    expect(agent.child.exitCode).toBeNull(); // still running
    await agent.kill('SIGTERM');
    noStack(agent.output());
  });
});
