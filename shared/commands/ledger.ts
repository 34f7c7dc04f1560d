/**
 * The ledger codec: one hash per (device, command id), `iot:{dev}:cmd:<id>`,
 * written only by the Lua scripts (enqueueCommand, beginCommand, finishCommand,
 * concludeCommand, expireQueuedCommand, replayCommand) and read here. Its field
 * names and the stored copy of the terminal result are encoded and decoded in
 * this one file; nothing else names a ledger field or parses the stored result.
 */
import { ValidationError } from '../errors.js';
import { type CommandResult, type CommandStatus, decodeResult, isTerminal } from './codec.js';

/** Ledger hash fields (short: one hash per command). The scripts use the same letters. */
export const LEDGER_FIELD = {
  status: 'st',
  queuedAt: 'tq',
  deliveredAt: 'td',
  startedAt: 'ts',
  attempts: 'at',
  consumer: 'by',
  /** The terminal result's fields, a JSON array (encodeStoredResult). */
  result: 'r',
  /** The command's entry id in the device's stream. */
  entryId: 'e',
} as const;

/** The ledger's copy of a terminal result: the result entry's flat fields as one JSON array. */
export function encodeStoredResult(fields: readonly string[]): string {
  return JSON.stringify(fields);
}

/**
 * The flat result fields of a stored copy (ledger `r`, or a journal record).
 * Throws ValidationError when it is not a JSON array of strings.
 */
export function decodeStoredResult(text: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ValidationError('result', `stored result is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (!Array.isArray(value) || value.length % 2 !== 0 || !value.every((v) => typeof v === 'string'))
    throw new ValidationError('result', 'stored result must be a JSON array of field, value strings');
  return value as string[];
}

export interface LedgerView {
  status: CommandStatus | 'none';
  attempts: number;
  queuedAt?: number;
  deliveredAt?: number;
  startedAt?: number;
  /** The terminal result, once there is one (and its copy is readable). */
  result?: CommandResult;
  /** The stored result's fields as they are (what a republish sends again). */
  stored?: string[];
}

const PROGRESS = new Set(['queued', 'delivered', 'running']);

/** Decodes a ledger hash (HGETALL, or HMGET of LEDGER_FIELD names); an empty hash is `none`. */
export function decodeLedger(hash: Readonly<Record<string, string | null | undefined>>): LedgerView {
  const st = hash[LEDGER_FIELD.status];
  if (!st || (!isTerminal(st) && !PROGRESS.has(st))) return { status: 'none', attempts: 0 };
  const num = (f: string) => {
    const v = hash[f];
    return v === undefined || v === null || v === '' ? undefined : Number(v);
  };
  const view: LedgerView = {
    status: st as CommandStatus,
    attempts: num(LEDGER_FIELD.attempts) ?? 0,
    queuedAt: num(LEDGER_FIELD.queuedAt),
    deliveredAt: num(LEDGER_FIELD.deliveredAt),
    startedAt: num(LEDGER_FIELD.startedAt),
  };
  const text = hash[LEDGER_FIELD.result];
  if (text && isTerminal(st)) {
    view.stored = decodeStoredResult(text);
    view.result = decodeResult(view.stored);
  }
  return view;
}

/** The ledger fields the sweep and the gateway's intake read (HMGET), in decodeLedger's terms. */
export const LEDGER_READ_FIELDS = [
  LEDGER_FIELD.status,
  LEDGER_FIELD.result,
  LEDGER_FIELD.deliveredAt,
  LEDGER_FIELD.attempts,
] as const;

/** An HMGET reply of LEDGER_READ_FIELDS as the hash decodeLedger takes. */
export function ledgerHash(values: readonly (string | null)[]): Record<string, string | null | undefined> {
  return Object.fromEntries(LEDGER_READ_FIELDS.map((f, i) => [f, values[i]]));
}
