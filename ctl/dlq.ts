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
 * wins.
 *
 * Replaying the same dead letter twice (or from two terminals at once, or a
 * month later) queues it once: replayCommand-3.lua queues the replay and
 * writes a replay record (`iot:{dev}:replay:<deadLetterId>`) in one step, and
 * a replay finding the record does nothing. The record, not the replay's
 * ledger, is what makes this last: a ledger expires a day after its command's
 * deadline, the record lives `dlq.replayRecordTtl` (60 days), longer than the
 * dead letters themselves (30 days).
 */
import { createHash } from 'node:crypto';
import { type Command, decodeResult, encodeCommand } from '#shared/commands/codec.js';
import { type DeadLetter, decodeDeadLetter } from '#shared/commands/deadletter.js';
import { replayCommand } from '#shared/commands/scripts.js';
import { commandStatus, DEFAULT_LEDGER_RETENTION_MS, ringDoorbell } from '#shared/commands/send.js';
import { UsageError } from '#shared/errors.js';
import { DEVICE_ID_PATTERN, type Keys } from '#shared/keys.js';
import type { RedisClient } from '#shared/redis/connect.js';
import type { ReplicaWait } from '#shared/redis/durability.js';
import { idTime } from '#shared/streams/inspect.js';
import { durabilityOf } from '#shared/telemetry/producer-options.js';
import { type CtlCommand, table } from './context.js';

export { type DeadLetter, decodeDeadLetter };

const USAGE = `Usage:
  ctl dlq list [count]              the newest [count] (default 50) dead-lettered commands
  ctl dlq replay <deadLetterId|all> queue them again (once: a second replay does nothing)`;

/** A replayed command never gets less time than this to run. */
const MIN_REPLAY_TTL_MS = 60_000;

/** Default lifetime of a replay record (ctl/config.ts `dlq.replayRecordTtl`). */
const DEFAULT_REPLAY_RECORD_TTL_MS = 60 * 86_400_000;

/** How many results entries a repeated replay reads looking for the replay's result once its ledger is gone. */
const RESULT_SEARCH_LIMIT = 10_000;

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
  /** What happened, for people: the entry queued; when it was replayed and with what result; why it was skipped. */
  readonly detail?: string;
  /** already-replayed: when the replay was queued (ms). */
  readonly replayedAt?: number;
  /** already-replayed: the replay's status (ledger, else its entry in the results stream), or "unknown" when neither is kept any more. */
  readonly status?: string;
}

export interface ReplayOptions {
  now?: number;
  /** How long the replay record is kept (ms). */
  recordTtlMs?: number;
  /** producer.durability: the replay is queued once this many replicas have it. */
  durability?: ReplicaWait;
}

export async function replay(
  client: RedisClient,
  keys: Keys,
  dead: DeadLetter,
  options: ReplayOptions = {},
): Promise<ReplayOutcome> {
  const base = { deadLetter: dead.id, deviceId: dead.deviceId, commandId: dead.commandId };
  if (!dead.command || !dead.deviceId)
    return { ...base, action: 'skipped', detail: dead.problem ?? 'no device id' };
  if (!DEVICE_ID_PATTERN.test(dead.deviceId))
    return { ...base, action: 'skipped', detail: `device id "${dead.deviceId}" is not valid` };
  const now = options.now ?? Date.now();
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
  const { fields } = encodeCommand(command);
  const {
    queued,
    replayId: replayedAs,
    entryId,
    replayedAt,
  } = await replayCommand(
    client,
    {
      stream: keys.commands(dead.deviceId),
      ledger: keys.commandLedger(dead.deviceId, id),
      record: keys.replayRecord(dead.deviceId, dead.id),
      expireAt: command.deadline + DEFAULT_LEDGER_RETENTION_MS,
      now,
      recordExpireAt: now + (options.recordTtlMs ?? DEFAULT_REPLAY_RECORD_TTL_MS),
      replayId: id,
      fields,
    },
    options.durability,
  );
  if (queued) {
    await ringDoorbell(client, keys, dead.deviceId);
    return { ...base, replayId: id, action: 'queued', detail: `entry ${entryId}` };
  }
  const status = await replayStatus(client, keys, dead.deviceId, replayedAs, replayedAt);
  const when = Number.isFinite(replayedAt) ? new Date(replayedAt).toISOString() : 'an unknown time';
  return {
    ...base,
    replayId: replayedAs,
    action: 'already-replayed',
    replayedAt,
    status,
    detail: `already replayed at ${when}${entryId ? ` (entry ${entryId})` : ''}, result ${status}`,
  };
}

/**
 * The status a replay reached: from its ledger while it lasts, then from its
 * entry in the results stream (read from the replay's time on, bounded), else
 * "unknown" (both expired: the replay record still says it ran).
 */
async function replayStatus(
  client: RedisClient,
  keys: Keys,
  deviceId: string,
  id: string,
  since: number,
): Promise<string> {
  const ledger = await commandStatus(client, keys, deviceId, id);
  if (ledger.status !== 'none') return ledger.status;
  let start = Number.isFinite(since) ? `${since}-0` : '-';
  for (let read = 0; read < RESULT_SEARCH_LIMIT; ) {
    const page = await client.xrange(keys.results(), start, '+', 'COUNT', 1000);
    for (const [, f] of page) {
      try {
        const r = decodeResult(f);
        if (r.deviceId === deviceId && r.commandId === id) return r.status;
      } catch {
        // a malformed result entry is not the one looked for
      }
    }
    if (page.length < 1000) break;
    read += page.length;
    start = `(${page[page.length - 1]![0]}`;
  }
  return 'unknown';
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
        if (!d.command) return { ...d, replayId: undefined, replayStatus: 'cannot replay' };
        let status: string = (await commandStatus(client, keys, d.deviceId, replayId(d))).status;
        // Its ledger expired: the replay record still tells that it was replayed.
        if (status === 'none' && (await client.exists(keys.replayRecord(d.deviceId, d.id))))
          status = 'replayed';
        return { ...d, replayId: replayId(d), replayStatus: status };
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
    const recordTtlMs = ctx.config['dlq.replayRecordTtl'];
    const durability = durabilityOf(ctx.config);
    for (const d of list) outcomes.push(await replay(client, keys, d, { recordTtlMs, durability }));
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
