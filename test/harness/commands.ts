/** Helpers for the command tests: agents with the test handlers, results and side effects read back. */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import { type CommandResult, decodeResult, resultFields } from '#shared/commands/codec.js';
import type { Sent } from '#shared/commands/send.js';
import type { Keys } from '#shared/keys.js';
import { type AgentProcess, startAgentProcess } from './agent-process.js';

export function tempDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'fleet-agent-'));
}

/** An agent child process running only the command worker (no sensors), with the test.* handlers. */
export function startCommandAgent(
  redisUrl: string,
  keys: Keys,
  deviceId: string,
  dataDir: string,
  extra: Record<string, string | number | boolean> = {},
): AgentProcess {
  return startAgentProcess({
    'device.id': deviceId,
    'device.dataDir': dataDir,
    'redis.url': redisUrl,
    'redis.keyPrefix': keys.prefix,
    'redis.partitions': keys.partitions,
    sensors: '',
    'journal.enabled': false,
    'commands.testHandlers': true,
    'commands.handlerTimeout': '1500ms',
    'commands.claimIdle': '2s',
    'commands.claimInterval': '250ms',
    'commands.blockTime': '500ms',
    'commands.retryBaseDelay': '20ms',
    'commands.retryMaxDelay': '100ms',
    'commands.maxAttempts': 3,
    'log.level': 'warn',
    ...extra,
  });
}

export async function readResults(client: Redis | Cluster, keys: Keys): Promise<CommandResult[]> {
  const out: CommandResult[] = [];
  let start = '-';
  for (;;) {
    const page = await client.xrange(keys.results(), start, '+', 'COUNT', 5000);
    for (const [, fields] of page) out.push(decodeResult(fields));
    if (page.length < 5000) return out;
    start = `(${page[page.length - 1]![0]}`;
  }
}

/** Results grouped by "device/command". */
export function resultsByCommand(results: readonly CommandResult[]): Map<string, CommandResult[]> {
  const map = new Map<string, CommandResult[]>();
  for (const r of results) {
    const k = `${r.deviceId}/${r.commandId}`;
    const list = map.get(k);
    if (list) list.push(r);
    else map.set(k, [r]);
  }
  return map;
}

/** How many times each command id took effect, from <dataDir>/effects.log of the test handlers. */
export function effects(...dataDirs: string[]): Map<string, number> {
  return countLines('effects.log', dataDirs);
}

/** How many times the read-only `test.read` ran for each command id (<dataDir>/reads.log). */
export function reads(...dataDirs: string[]): Map<string, number> {
  return countLines('reads.log', dataDirs);
}

function countLines(file: string, dataDirs: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const dir of dataDirs) {
    let text = '';
    try {
      text = readFileSync(join(dir, file), 'utf8');
    } catch {
      continue;
    }
    for (const id of text.split('\n')) if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/**
 * The phase the device's command journal last recorded for a command
 * (<dataDir>/commands.journal), or undefined. A test that kills an agent
 * "after the handler" waits for `done`: the effect alone is written a moment
 * before its record, and a kill in between rightly ends the command `unknown`.
 */
export function journalPhase(dataDir: string, commandId: string): string | undefined {
  let text = '';
  try {
    text = readFileSync(join(dataDir, 'commands.journal'), 'utf8');
  } catch {
    return undefined;
  }
  let phase: string | undefined;
  for (const line of text.split('\n')) {
    if (!line.includes(commandId)) continue;
    try {
      const r = JSON.parse(line) as { i?: string; p?: string };
      if (r.i === commandId) phase = r.p;
    } catch {
      // a line being written right now
    }
  }
  return phase;
}

/**
 * Fixes a `failed` result in a command's ledger, as another consumer that
 * claimed the entry would have: the worker still running it must then report
 * this result (first one wins), not its own.
 */
export async function fixFailedFirst(
  client: Redis | Cluster,
  keys: Keys,
  deviceId: string,
  sent: Sent,
): Promise<void> {
  const first = resultFields({
    commandId: sent.command.id,
    deviceId,
    status: 'failed',
    entryId: sent.entryId,
    finishedAt: Date.now(),
    attempts: 1,
    errorClass: 'RangeError',
    message: 'fixed first elsewhere',
    version: 1,
  });
  await client.hset(
    keys.commandLedger(deviceId, sent.command.id),
    'st',
    'failed',
    'r',
    JSON.stringify(first),
    'at',
    1,
  );
}
