/**
 * The command worker's decisions, as named steps in the order a command meets
 * them, with no I/O: each takes what the worker read (the entry, the local
 * journal, the ledger's answer, an attempt's outcome) and says what to do
 * next. worker.ts does the reading and writing between them; the unit test
 * (test/unit/command-steps.test.ts) runs every branch without Redis.
 *
 *   receive -> check journal -> (start at once?) -> check ledger, deadline ->
 *   begin -> run -> after attempt (retry or end) -> conclude (shared/commands/conclude.ts)
 */
import {
  type Command,
  type CommandResult,
  decodeCommand,
  salvageCommand,
  type TerminalStatus,
} from '#shared/commands/codec.js';
import { decodeStoredResult } from '#shared/commands/ledger.js';
import type { Begun } from '#shared/commands/scripts.js';
import { CommandRejectedError, ValidationError } from '#shared/errors.js';
import type { CommandHandler } from './handlers.js';
import type { JournalRecord } from './journal.js';

/** How a command ends, before the worker adds the fields every result has (ids, times). */
export interface Ending {
  status: TerminalStatus;
  errorClass?: string;
  message?: string;
  output?: unknown;
  /** Overrides the attempts the ledger counted (the journal may know of more). */
  attempts?: number;
}

/** Error class name for the result's `ec` field. */
export function errorClass(err: unknown): string {
  if (err instanceof CommandRejectedError) return err.kind;
  if (err instanceof Error) return err.name || err.constructor.name;
  return typeof err;
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Step 1, receive: decode the entry; a malformed one is rejected with the reason, under the id it carries. */
export function receive(
  fields: readonly string[],
):
  | { kind: 'command'; command: Command }
  | { kind: 'malformed'; error: ValidationError; salvage: ReturnType<typeof salvageCommand> } {
  try {
    return { kind: 'command', command: decodeCommand(fields) };
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    return { kind: 'malformed', error: err, salvage: salvageCommand(fields) };
  }
}

/**
 * Step 2, check the journal: the device's own journal knows what took effect even when Redis
 * forgot. A `done` record (killed after the handler, before the ledger was told) is reported.
 */
export function checkJournal(journaled: JournalRecord | undefined): string[] | undefined {
  return journaled?.p === 'done' && journaled.r ? decodeStoredResult(journaled.r) : undefined;
}

/**
 * Whether a command may start before the ledger is asked: its handler is read-only (nothing it
 * does can take effect twice), it was read for the first time, no journal record of it exists,
 * the server concludes in one call (which records its receipt), and its deadline is far enough
 * away that the gateway's sweep, which expires commands nobody received by its own clock, cannot
 * have ended it.
 */
export function startsAtOnce(s: {
  handler: CommandHandler | undefined;
  fresh: boolean;
  journaled: boolean;
  oneCall: boolean;
  deadline: number;
  now: number;
  clockSkewAllowanceMs: number;
}): boolean {
  return (
    s.handler?.readOnly === true &&
    s.fresh &&
    !s.journaled &&
    s.oneCall &&
    s.deadline - s.now > s.clockSkewAllowanceMs
  );
}

export type LedgerDecision =
  /** Already terminal: publish the stored result again, never run. */
  | { kind: 'republish'; stored: string[] }
  | { kind: 'end'; ending: Ending }
  /** An earlier attempt was left running and may be run again (idempotent, or it provably failed). */
  | { kind: 'restart' }
  | { kind: 'run' };

/**
 * Step 3, check the ledger and the deadline, on beginCommand's answer. Past the deadline it never
 * runs: `expired` if no attempt started, `failed` if the journal shows every attempt threw, else
 * `unknown` (it may have taken effect). Without a handler it is rejected. An interrupted attempt
 * of a non-idempotent handler is not run again (`unknown`).
 */
export function checkLedger(
  begun: Begun,
  journaled: JournalRecord | undefined,
  handler: CommandHandler | undefined,
  c: { deadline: number; handlerNames: readonly string[]; name: string },
): LedgerDecision {
  if (begun.code === 'done') return { kind: 'republish', stored: begun.stored ?? [] };
  // An attempt was started before (a crash, or a consumer that was claimed from):
  // the ledger says so, or this device's journal does (also when Redis lost the ledger).
  const interrupted = begun.code === 'running' || begun.code === 'lapsed' || journaled?.p === 'start';
  // The journal proves the last attempt threw before its effect: nothing took effect.
  const harmless = journaled?.p === 'failed';
  if (begun.code === 'expired' || begun.code === 'lapsed') {
    const deadline = new Date(c.deadline).toISOString();
    if (harmless)
      // Every attempt threw (no effect) and the deadline passed before the next: as when retrying.
      return {
        kind: 'end',
        ending: {
          status: 'failed',
          attempts: Math.max(begun.attempts, journaled.a),
          errorClass: 'DeadlinePassed',
          message: `an earlier attempt failed and deadline ${deadline} passed before it could be retried`,
        },
      };
    if (!interrupted)
      return {
        kind: 'end',
        ending: { status: 'expired', message: `deadline ${deadline} passed before it ran; not executed` },
      };
    // It started, so `expired` ("never ran") would be false; past the deadline it is not run
    // again, idempotent or not. Whether it took effect is not known.
    return {
      kind: 'end',
      ending: {
        status: 'unknown',
        attempts: Math.max(begun.attempts, journaled?.a ?? 0),
        errorClass: 'Interrupted',
        message: `an earlier attempt was interrupted and deadline ${deadline} passed before it could be retried; it may or may not have taken effect and is not run again`,
      },
    };
  }
  if (!handler)
    return {
      kind: 'end',
      ending: {
        status: 'rejected',
        errorClass: 'UnknownCommand',
        message: `no handler named "${c.name}" on this device (known: ${c.handlerNames.join(', ')})`,
      },
    };
  if (interrupted && !handler.idempotent && !harmless)
    return {
      kind: 'end',
      ending: {
        status: 'unknown',
        errorClass: 'Interrupted',
        message: `an earlier attempt of the non-idempotent handler "${handler.name}" was interrupted; it may or may not have taken effect and is not run again`,
      },
    };
  return begun.code === 'running' ? { kind: 'restart' } : { kind: 'run' };
}

/** What one handler attempt came to (worker.ts runs it). */
export type Outcome =
  | { kind: 'ok'; output: unknown }
  /** CommandRejectedError: the handler refused it. */
  | { kind: 'rejected'; error: unknown }
  /** A non-idempotent handler past its timeout: it may still take effect, so it is never retried. */
  | { kind: 'unknown'; error: unknown }
  /** It threw: no effect, so it may be retried. */
  | { kind: 'transient'; error: unknown };

export type AttemptDecision = { kind: 'end'; ending: Ending } | { kind: 'retry'; delayMs: number };

/**
 * Step 5, after an attempt: end with its outcome, or retry a transient failure after `delayMs`
 * unless the attempts are used up or the deadline would pass first (then `failed`).
 */
export function afterAttempt(
  outcome: Outcome,
  a: { attempts: number; maxAttempts: number; now: number; deadline: number; delayMs: number },
): AttemptDecision {
  if (outcome.kind === 'ok')
    return { kind: 'end', ending: { status: 'succeeded', output: outcome.output ?? null } };
  if (outcome.kind === 'rejected' || outcome.kind === 'unknown')
    return {
      kind: 'end',
      ending: {
        status: outcome.kind,
        errorClass: errorClass(outcome.error),
        message: messageOf(outcome.error),
      },
    };
  const pastDeadline = a.now + a.delayMs > a.deadline;
  if (a.attempts < a.maxAttempts && !pastDeadline) return { kind: 'retry', delayMs: a.delayMs };
  return {
    kind: 'end',
    ending: {
      status: 'failed',
      errorClass: errorClass(outcome.error),
      message: `${messageOf(outcome.error)}${a.attempts < a.maxAttempts ? ' (no retry: the deadline would pass first)' : ''}`,
    },
  };
}

/** The attempts so far threw (no effect) and the deadline passed while retrying. */
export function deadlinePassedWhileRetrying(error: unknown): Ending {
  return {
    status: 'failed',
    errorClass: errorClass(error),
    message: `${messageOf(error)} (deadline passed while retrying)`,
  };
}

/** Exponential backoff with jitter: base * 2^(attempt-1), capped, between half and all of it. */
export function backoff(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 20));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

/** A malformed entry's `rejected` result, labelled with what could be read from it. */
export function malformedResult(
  error: ValidationError,
  salvage: ReturnType<typeof salvageCommand>,
  c: { deviceId: string; entryId: string; now: number; version: number },
): CommandResult {
  return {
    commandId: salvage.id ?? '',
    deviceId: c.deviceId,
    status: 'rejected',
    name: salvage.name,
    correlationId: salvage.correlationId,
    entryId: c.entryId,
    finishedAt: c.now,
    attempts: 0,
    errorClass: 'ValidationError',
    message: `malformed command entry: ${error.message}`,
    version: c.version,
  };
}
