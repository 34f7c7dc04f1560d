/**
 * The command worker's decisions (device/commands/steps.ts), without Redis:
 * what each ledger answer, journal record and attempt outcome leads to. The
 * promises they hold (docs/guarantees.md §2): an expired command never runs,
 * an interrupted non-idempotent handler never runs twice, every command ends
 * in one terminal result.
 */
import { describe, expect, it } from 'vitest';
import { commandFields, resultFields, validateCommand } from '#shared/commands/codec.js';
import { encodeStoredResult } from '#shared/commands/ledger.js';
import type { Begun } from '#shared/commands/scripts.js';
import { CommandRejectedError, HandlerTimeoutError } from '#shared/errors.js';
import type { CommandHandler } from '../../device/commands/handlers.js';
import {
  afterAttempt,
  backoff,
  checkJournal,
  checkLedger,
  receive,
  startsAtOnce,
} from '../../device/commands/steps.js';

const handler = (over: Partial<CommandHandler> = {}): CommandHandler => ({
  name: 'set-config',
  idempotent: false,
  timeoutMs: 1000,
  run: () => undefined,
  ...over,
});
const begun = (code: Begun['code'], over: Partial<Begun> = {}): Begun => ({
  code,
  attempts: 1,
  deliveredAt: 10,
  stored: undefined,
  ...over,
});
const c = { deadline: 5000, handlerNames: ['ping', 'set-config'], name: 'set-config' };

describe('command steps', () => {
  it('receive: a command decodes; a malformed entry is named with what could be salvaged', () => {
    const command = validateCommand({ id: 'c-1', name: 'ping', issuedAt: 1, deadline: 2 });
    expect(receive(commandFields(command))).toEqual({ kind: 'command', command });
    const bad = receive(['i', 'c-2', 'n', 'ping']);
    expect(bad.kind).toBe('malformed');
    if (bad.kind === 'malformed') expect(bad.salvage.id).toBe('c-2');
  });

  it('check journal: only a done record with its result is reported', () => {
    const r = resultFields({
      commandId: 'c',
      deviceId: 'd',
      status: 'succeeded',
      finishedAt: 1,
      attempts: 1,
      version: 1,
    });
    expect(checkJournal({ i: 'c', p: 'done', a: 1, x: 9, r: encodeStoredResult(r) })).toEqual(r);
    expect(checkJournal({ i: 'c', p: 'start', a: 1, x: 9 })).toBeUndefined();
    expect(checkJournal(undefined)).toBeUndefined();
  });

  it('check ledger: terminal republishes, expired never runs, a lapsed start is unknown, a failed one failed', () => {
    const stored = ['i', 'c'];
    expect(checkLedger(begun('done', { stored }), undefined, handler(), c)).toEqual({
      kind: 'republish',
      stored,
    });
    expect(checkLedger(begun('expired'), undefined, handler(), c)).toMatchObject({
      kind: 'end',
      ending: { status: 'expired' },
    });
    expect(checkLedger(begun('lapsed', { attempts: 2 }), undefined, handler(), c)).toMatchObject({
      kind: 'end',
      ending: { status: 'unknown', errorClass: 'Interrupted', attempts: 2 },
    });
    // The journal says an attempt started though the ledger was lost: not `expired` ("never ran").
    expect(checkLedger(begun('expired'), { i: 'c', p: 'start', a: 3, x: 9 }, handler(), c)).toMatchObject({
      ending: { status: 'unknown', attempts: 3 },
    });
    expect(checkLedger(begun('lapsed'), { i: 'c', p: 'failed', a: 4, x: 9 }, handler(), c)).toMatchObject({
      ending: { status: 'failed', errorClass: 'DeadlinePassed', attempts: 4 },
    });
  });

  it('check ledger: no handler is rejected; an interrupted non-idempotent handler is unknown, an idempotent one restarts', () => {
    expect(checkLedger(begun('delivered'), undefined, undefined, c)).toMatchObject({
      ending: { status: 'rejected', errorClass: 'UnknownCommand' },
    });
    expect(checkLedger(begun('running'), undefined, handler(), c)).toMatchObject({
      ending: { status: 'unknown', errorClass: 'Interrupted' },
    });
    expect(checkLedger(begun('started'), { i: 'c', p: 'start', a: 1, x: 9 }, handler(), c)).toMatchObject({
      ending: { status: 'unknown' },
    });
    expect(checkLedger(begun('running'), undefined, handler({ idempotent: true }), c)).toEqual({
      kind: 'restart',
    });
    // The journal proves the interrupted attempt threw first: it may run again.
    expect(checkLedger(begun('running'), { i: 'c', p: 'failed', a: 1, x: 9 }, handler(), c)).toEqual({
      kind: 'restart',
    });
    expect(checkLedger(begun('started'), undefined, handler(), c)).toEqual({ kind: 'run' });
  });

  it('after an attempt: ok, rejected and unknown end; a transient failure retries until attempts or the deadline run out', () => {
    const limits = { attempts: 1, maxAttempts: 3, now: 1000, deadline: 5000, delayMs: 100 };
    expect(afterAttempt({ kind: 'ok', output: undefined }, limits)).toEqual({
      kind: 'end',
      ending: { status: 'succeeded', output: null },
    });
    expect(
      afterAttempt({ kind: 'rejected', error: new CommandRejectedError('no', 'Bad') }, limits),
    ).toMatchObject({
      ending: { status: 'rejected', errorClass: 'Bad' },
    });
    expect(
      afterAttempt({ kind: 'unknown', error: new HandlerTimeoutError('set-config', 1000) }, limits),
    ).toMatchObject({ ending: { status: 'unknown', errorClass: 'HandlerTimeoutError' } });
    const boom = { kind: 'transient' as const, error: new Error('boom') };
    expect(afterAttempt(boom, limits)).toEqual({ kind: 'retry', delayMs: 100 });
    expect(afterAttempt(boom, { ...limits, attempts: 3 })).toMatchObject({
      ending: { status: 'failed', message: 'boom' },
    });
    expect(afterAttempt(boom, { ...limits, now: 4950 })).toMatchObject({
      ending: { status: 'failed', message: 'boom (no retry: the deadline would pass first)' },
    });
  });

  it('starts at once only a fresh read-only command with no journal, on one-call servers, far from its deadline', () => {
    const s = {
      handler: handler({ readOnly: true, idempotent: true }),
      fresh: true,
      journaled: false,
      oneCall: true,
      deadline: 10_000,
      now: 0,
      clockSkewAllowanceMs: 2000,
    };
    expect(startsAtOnce(s)).toBe(true);
    expect(startsAtOnce({ ...s, handler: handler() })).toBe(false);
    expect(startsAtOnce({ ...s, fresh: false })).toBe(false);
    expect(startsAtOnce({ ...s, journaled: true })).toBe(false);
    expect(startsAtOnce({ ...s, oneCall: false })).toBe(false);
    expect(startsAtOnce({ ...s, now: 8500 })).toBe(false);
  });

  it('backoff doubles from the base, is capped, and jitters between half and all of it', () => {
    expect(backoff(1, 100, 1000, () => 1)).toBe(100);
    expect(backoff(3, 100, 1000, () => 1)).toBe(400);
    expect(backoff(10, 100, 1000, () => 1)).toBe(1000);
    expect(backoff(10, 100, 1000, () => 0)).toBe(500);
  });
});
