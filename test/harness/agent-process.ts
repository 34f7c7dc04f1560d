/**
 * Runs the device agent as a child process (the crash tests kill it with
 * SIGKILL), with flags built from an options object.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { flagName } from '#shared/config/schema.js';
import { captureOutput, spawnTracked, waitExit } from './process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface AgentProcess {
  readonly child: ChildProcess;
  output(): string;
  /** Parsed JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  /** Resolves when a log line matching the predicate appears. */
  waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export function startAgentProcess(
  options: Record<string, string | number | boolean>,
  env: Record<string, string> = {},
): AgentProcess {
  const args = ['--import', 'tsx', 'device/cli.ts'];
  for (const [key, value] of Object.entries(options)) args.push(`--${flagName(key)}`, String(value));
  return wrapProcess(spawnTracked(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env } }));
}

/**
 * Runs an agent executable (a single-file binary; `command` is its path, or
 * a qemu command line ending in it) with flags built from an options object.
 */
export function startAgentExecutable(
  command: readonly string[],
  options: Record<string, string | number | boolean>,
  cwd: string,
  env: Record<string, string> = {},
): AgentProcess {
  const [cmd, ...args] = command;
  if (!cmd) throw new TypeError('startAgentExecutable needs a command');
  for (const [key, value] of Object.entries(options)) args.push(`--${flagName(key)}`, String(value));
  return wrapProcess(spawnTracked(cmd, args, { cwd, env: { ...process.env, ...env } }));
}

export function runScript(
  script: string,
  args: readonly string[],
  env: Record<string, string> = {},
): AgentProcess {
  return wrapProcess(
    spawnTracked(process.execPath, ['--import', 'tsx', script, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
    }),
  );
}

/** A program as `npm run <name>` runs it: from its bundle (scripts/launch.mjs), not under tsx. */
export function runProgram(
  name: 'gateway' | 'sim' | 'agent',
  args: readonly string[],
  env: Record<string, string> = {},
): AgentProcess {
  return wrapProcess(
    spawnTracked(process.execPath, ['scripts/launch.mjs', name, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
    }),
  );
}

function wrapProcess(child: ChildProcess): AgentProcess {
  const out = captureOutput(child);
  const logs = () =>
    out
      .text()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  return {
    child,
    output: () => out.text(),
    logs,
    waitForLog: async (match, timeoutMs = 15_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = logs().find(match);
        if (hit) return hit;
        if (child.exitCode !== null || Date.now() > deadline) {
          throw new Error(`log line not seen (exit ${child.exitCode}); output:\n${out.text().slice(-4000)}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    kill: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return waitExit(child, 15_000);
    },
  };
}
