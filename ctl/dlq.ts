/**
 * `ctl dlq list [count]` and `ctl dlq replay <deadLetterId|all>`: inspect and
 * re-run dead-lettered commands (stream `iot:deadletter`, written by the
 * agent's command worker when a command failed on every attempt; entry
 * layout in docs/commands.md and docs/operator.md).
 *
 * A replay queues the original command again under a replay id derived from
 * the dead letter (`<commandId>.replay-<deadLetterId>`), with the original
 * name, arguments, correlation id and time to live. The original id cannot be
 * reused: its ledger already holds its terminal result, and the first result
 * wins. The derived id is what makes replay safe: replaying the same dead
 * letter twice (or from two terminals at once) queues it once, because the
 * send is deduplicated by command id; the second replay reports the status
 * the first one reached.
 */
import { createHash } from 'node:crypto';
import { type Command, decodeCommand, fieldMap } from '#shared/commands/codec.js';
import { commandStatus, queueCommand } from '#shared/commands/send.js';
import { describeError, UsageError } from '#shared/errors.js';
import type { Keys } from '#shared/keys.js';
import type { RedisClient } from '#shared/redis/connect.js';
import { idTime } from '#shared/streams/inspect.js';
import { type CtlCommand, table } from './context.js';

const USAGE = `Usage:
  ctl dlq list [count]              the newest [count] (default 50) dead-lettered commands
  ctl dlq replay <deadLetterId|all> queue them again (once: a second replay does nothing)`;

/** A replayed command never gets less time than this to run. */
const MIN_REPLAY_TTL_MS = 60_000;

export interface DeadLetter {
  /** Id of the entry in the dead-letter stream. */
  readonly id: string;
  readonly deviceId: string;
  readonly commandId: string;
  /** The command stream and entry the command came from. */
  readonly source?: string;
  readonly entryId?: string;
  readonly errorClass?: string;
  readonly message?: string;
  readonly attempts: number;
  /** The original command, when its fields still decode. */
  readonly command?: Command;
  /** Why the original command cannot be rebuilt, when it cannot. */
  readonly problem?: string;
}

export function decodeDeadLetter(id: string, fields: readonly string[]): DeadLetter {
  const map = fieldMap(fields);
  let command: Command | undefined;
  let problem: string | undefined;
  try {
    const original = JSON.parse(map.get('o') ?? 'null') as unknown;
    if (typeof original !== 'object' || original === null || Array.isArray(original))
      throw new TypeError('the original command (field "o") is missing');
    command = decodeCommand(Object.entries(original as Record<string, string>).flat());
  } catch (err) {
    problem = describeError(err);
  }
  return {
    id,
    deviceId: map.get('d') ?? '',
    commandId: map.get('i') ?? command?.id ?? '',
    source: map.get('src'),
    entryId: map.get('e'),
    errorClass: map.get('ec'),
    message: map.get('m'),
    attempts: Number(map.get('at') ?? 0),
    command,
    problem,
  };
}

/** The id a replay of this dead letter runs under: stable, so a second replay is deduplicated. */
export function replayId(dead: Pick<DeadLetter, 'id' | 'commandId'>): string {
  const id = `${dead.commandId}.replay-${dead.id}`;
  if (id.length <= 128) return id;
  return `replay-${dead.id}-${createHash('sha256').update(dead.commandId).digest('hex').slice(0, 32)}`;
}

export interface ReplayOutcome {
  readonly deadLetter: string;
  readonly deviceId: string;
  readonly commandId: string;
  readonly replayId?: string;
  readonly action: 'queued' | 'already-replayed' | 'skipped';
  /** For already-replayed: the status the replay has reached; for skipped: why. */
  readonly detail?: string;
}

export async function replay(
  client: RedisClient,
  keys: Keys,
  dead: DeadLetter,
  now: number = Date.now(),
): Promise<ReplayOutcome> {
  const base = { deadLetter: dead.id, deviceId: dead.deviceId, commandId: dead.commandId };
  if (!dead.command || !dead.deviceId)
    return { ...base, action: 'skipped', detail: dead.problem ?? 'no device id' };
  const original = dead.command;
  const id = replayId(dead);
  const ttl = Math.max(MIN_REPLAY_TTL_MS, original.deadline - original.issuedAt);
  const command: Command = {
    ...original,
    id,
    issuedAt: now,
    deadline: now + ttl,
    correlationId: original.correlationId,
  };
  const sent = await queueCommand(client, keys, dead.deviceId, command);
  if (sent.duplicate)
    return { ...base, replayId: id, action: 'already-replayed', detail: sent.existingStatus };
  return { ...base, replayId: id, action: 'queued', detail: `entry ${sent.entryId}` };
}

async function readDeadLetters(client: RedisClient, keys: Keys, count: number): Promise<DeadLetter[]> {
  const entries = await client.xrevrange(keys.deadLetters(), '+', '-', 'COUNT', count);
  return entries.map(([id, fields]) => decodeDeadLetter(id, fields));
}

const dlq: CtlCommand = async (ctx, args) => {
  const [verb, target, ...extra] = args;
  const { client, keys } = ctx;
  if (verb === 'list') {
    const count = target === undefined ? 50 : Number(target);
    if (!Number.isInteger(count) || count < 1 || extra.length > 0)
      throw new UsageError(`count must be a positive integer, got "${target}"`, USAGE);
    const list = await readDeadLetters(client, keys, count);
    const rows = await Promise.all(
      list.map(async (d) => {
        const status = d.command
          ? (await commandStatus(client, keys, d.deviceId, replayId(d))).status
          : 'cannot replay';
        return { ...d, replayId: d.command ? replayId(d) : undefined, replayStatus: status };
      }),
    );
    if (ctx.json) {
      ctx.out(JSON.stringify({ deadLetters: rows, total: await client.xlen(keys.deadLetters()) }));
      return 0;
    }
    ctx.out(
      table(
        rows.map((d) => ({
          id: d.id,
          failed: new Date(idTime(d.id)).toISOString(),
          device: d.deviceId,
          command: d.commandId,
          name: d.command?.name,
          attempts: d.attempts,
          error: [d.errorClass, d.message].filter(Boolean).join(': '),
          replay: d.replayStatus,
        })),
      ),
    );
    return 0;
  }
  if (verb === 'replay') {
    if (!target || extra.length > 0) throw new UsageError('replay needs one <deadLetterId> or "all"', USAGE);
    let list: DeadLetter[];
    if (target === 'all') {
      list = [];
      let start = '-';
      for (;;) {
        const page = await client.xrange(keys.deadLetters(), start, '+', 'COUNT', 1000);
        list.push(...page.map(([id, fields]) => decodeDeadLetter(id, fields)));
        if (page.length < 1000) break;
        start = `(${page[page.length - 1]![0]}`;
      }
    } else {
      const page = await client.xrange(keys.deadLetters(), target, target);
      if (page.length === 0) throw new UsageError(`no dead letter with id "${target}"`, USAGE);
      list = page.map(([id, fields]) => decodeDeadLetter(id, fields));
    }
    const outcomes: ReplayOutcome[] = [];
    for (const d of list) outcomes.push(await replay(client, keys, d));
    if (ctx.json) ctx.out(JSON.stringify({ replays: outcomes }));
    else {
      ctx.out(
        table(
          outcomes.map((o) => ({
            'dead letter': o.deadLetter,
            device: o.deviceId,
            command: o.commandId,
            'replayed as': o.replayId,
            action: o.action,
            detail: o.detail,
          })),
        ),
      );
      const n = (a: ReplayOutcome['action']) => outcomes.filter((o) => o.action === a).length;
      ctx.out(
        `\n${n('queued')} queued, ${n('already-replayed')} already replayed (nothing sent), ${n('skipped')} skipped`,
      );
    }
    return outcomes.some((o) => o.action === 'skipped') ? 1 : 0;
  }
  throw new UsageError(verb ? `unknown dlq command "${verb}"` : 'no dlq command given', USAGE);
};

export default dlq;
