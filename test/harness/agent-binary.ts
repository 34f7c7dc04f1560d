/**
 * One suite for every agent binary (x64 natively, ARM under qemu user-mode
 * emulation): it is the agent users flash, so it must answer --version,
 * publish telemetry and execute a command against a real Redis from a
 * directory holding nothing but itself (Lua scripts and package data
 * inlined), print no startup warning, and
 * survive an update in place (a new file renamed over the running one, then a
 * restart) with its sequence continuing.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCommand, waitForResult } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import { VERSION } from '#shared/version.js';
import { binaryName, commandFor, TARGETS, type TargetName } from '../../scripts/binaries/targets.js';
import { type AgentProcess, startAgentExecutable } from './agent-process.js';
import { randomPrefix } from './prefix.js';
import { type RedisServer, startRedis } from './redis-server.js';
import { readStream, waitFor } from './streams.js';

/** Emulated ARM starts in seconds, not milliseconds: generous, bounded waits. */
const WAIT_MS = 90_000;

/**
 * No startup noise: every output line is one of the agent's JSON log lines
 * (Node's own warnings, such as ExperimentalWarning or DeprecationWarning,
 * are plain text), and none is an error. Warnings the agent logs about its
 * own state (e.g. a slow Redis under emulation) are the agent's business.
 */
function expectQuietOutput(agent: AgentProcess): void {
  const lines = agent
    .output()
    .split('\n')
    .filter((l) => l.trim() !== '');
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) {
    expect(line.startsWith('{'), `not a log line: ${line}`).toBe(true);
    const level = (JSON.parse(line) as { level?: number }).level;
    expect(level, `an error: ${line}`).toBeLessThan(50);
  }
}

export function agentBinarySuite(targetName: TargetName, binary: () => string): void {
  const target = TARGETS[targetName];
  describe(`agent binary ${targetName} (node ${target.nodeVersion}${target.emulator ? ', under qemu' : ''})`, () => {
    let server: RedisServer;
    let dir: string;
    let installed: string;
    beforeAll(async () => {
      server = await startRedis({ local: true });
      // The binary alone in an empty directory, as on a board: nothing to read beside it.
      dir = mkdtempSync(join(tmpdir(), `agent-bin-${targetName}-`));
      installed = join(dir, binaryName(targetName));
      copyFileSync(binary(), installed);
    });
    afterAll(async () => {
      await server?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('--version names the agent version, the embedded Node and the target, and nothing else', () => {
      const { cmd, args } = commandFor(target, installed, ['--version']);
      const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', timeout: WAIT_MS });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(
        `agent ${VERSION} (node v${target.nodeVersion}, ${targetName}, single executable)\n`,
      );
    });

    it('publishes telemetry and executes a command against a real Redis, without startup warnings, and continues its sequence after an update in place', async () => {
      const prefix = randomPrefix();
      const keys = new Keys(prefix, 4);
      const deviceId = `bin-${targetName}`;
      const options = {
        'device.id': deviceId,
        'device.dataDir': join(dir, 'data'),
        'device.sequenceBlock': 100,
        'redis.url': server.url,
        'redis.keyPrefix': prefix,
        'redis.partitions': 4,
        sensors: 'constant',
        'sensors.constant.interval': 20,
      };
      const stream = keys.telemetryStreamFor(deviceId);
      const admin = server.client();
      const command = () => {
        const c = commandFor(target, installed);
        return [c.cmd, ...c.args];
      };
      const atLeast = (n: number) =>
        waitFor(async () => (await admin.xlen(stream)) >= n, WAIT_MS, `${n} entries in ${stream}`);
      try {
        let agent = startAgentExecutable(command(), options, dir);
        await atLeast(20);
        expect(await agent.kill('SIGTERM')).toBe(0);
        expectQuietOutput(agent);

        // Update in place: a new file renamed over the binary (the way install.sh replaces it), restart.
        copyFileSync(binary(), `${installed}.new`);
        renameSync(`${installed}.new`, installed);
        const before = await admin.xlen(stream);
        agent = startAgentExecutable(command(), options, dir);
        await atLeast(before + 20);

        // A control command end to end: stream, consumer group, ledger scripts, handler, result.
        const sent = await sendCommand(admin, keys, deviceId, {
          name: 'set-interval',
          args: { sensor: 'constant', interval: 50 },
          ttlMs: WAIT_MS,
        });
        const result = await waitForResult(admin, keys, deviceId, sent.command.id, WAIT_MS);
        expect(result).toMatchObject({
          status: 'succeeded',
          output: { sensor: 'constant', intervalMs: 50, previousMs: 20 },
        });
        expect(await agent.kill('SIGTERM')).toBe(0);
        expectQuietOutput(agent);

        const entries = await readStream(admin, stream);
        expect(entries.every((e) => e.deviceId === deviceId && e.type === 'constant')).toBe(true);
        // Clean stops leave no gap: one contiguous sequence 1..n across both runs.
        const seqs = entries.map((e) => e.seq).sort((a, b) => a - b);
        expect(seqs).toEqual(seqs.map((_, i) => i + 1));
      } finally {
        admin.disconnect();
      }
    });
  });
}
