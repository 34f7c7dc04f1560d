/**
 * The dead-letter codec: the entry of a command that ended `failed`, written by
 * the agent's worker and the gateway (commands to MQTT devices) through
 * conclude.ts, once each (publish-once marker in the stream's own slot), and
 * read by `ctl dlq`. Encode and decode live side by side here.
 *
 * Fields: d device, i command id, src the command stream, e its entry id,
 * ec error class, m message, at attempts, o the original entry's fields (JSON
 * object).
 */
import { describeError } from '../errors.js';
import { type Command, type CommandResult, decodeCommand, fieldMap } from './codec.js';

/** Dead-letter stream fields. */
export const DEAD_LETTER_FIELD = {
  deviceId: 'd',
  commandId: 'i',
  source: 'src',
  entryId: 'e',
  errorClass: 'ec',
  message: 'm',
  attempts: 'at',
  original: 'o',
} as const;

/** What a dead letter is made from. */
export interface DeadLetterInput {
  deviceId: string;
  /** The command stream the entry came from. */
  stream: string;
  entryId: string;
  /** The original entry's fields, as read from the stream. */
  fields: readonly string[];
  /** The terminal result (status `failed`). */
  result: CommandResult;
}

/** The dead-letter entry's fields (for publish-once, alone or with the other conclude steps). */
export function deadLetterFields(d: DeadLetterInput): (string | number)[] {
  const f = DEAD_LETTER_FIELD;
  return [
    f.deviceId,
    d.deviceId,
    f.commandId,
    d.result.commandId,
    f.source,
    d.stream,
    f.entryId,
    d.entryId,
    f.errorClass,
    d.result.errorClass ?? 'Error',
    f.message,
    d.result.message ?? '',
    f.attempts,
    d.result.attempts,
    f.original,
    JSON.stringify(Object.fromEntries(fieldMap(d.fields))),
  ];
}

/** A dead-letter entry as read back (ctl dlq list / replay). */
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

/** Decodes a dead-letter entry; an original that no longer decodes is named in `problem`, never thrown. */
export function decodeDeadLetter(id: string, fields: readonly string[]): DeadLetter {
  const f = DEAD_LETTER_FIELD;
  const map = fieldMap(fields);
  let command: Command | undefined;
  let problem: string | undefined;
  try {
    const original = JSON.parse(map.get(f.original) ?? 'null') as unknown;
    if (typeof original !== 'object' || original === null || Array.isArray(original))
      throw new TypeError(`the original command (field "${f.original}") is missing`);
    command = decodeCommand(Object.entries(original as Record<string, string>).flat());
  } catch (err) {
    problem = describeError(err);
  }
  return {
    id,
    deviceId: map.get(f.deviceId) ?? '',
    commandId: map.get(f.commandId) ?? command?.id ?? '',
    source: map.get(f.source),
    entryId: map.get(f.entryId),
    errorClass: map.get(f.errorClass),
    message: map.get(f.message),
    attempts: Number(map.get(f.attempts) ?? 0),
    command,
    problem,
  };
}
