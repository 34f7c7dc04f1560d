/**
 * The dead-letter entry of a command that ended `failed`, shared by the agent's
 * worker and the gateway (commands to MQTT devices), so both write the same
 * entry, once (publishOnce-2.lua, its marker in the stream's own slot).
 *
 * Fields: d device, i command id, src the command stream, e its entry id,
 * ec error class, m message, at attempts, o the original entry's fields (JSON
 * object).
 */
import type { Keys } from '../keys.js';
import type { ScriptCommands } from '../redis/scripts.js';
import { type CommandResult, fieldMap } from './codec.js';

export interface DeadLetter {
  deviceId: string;
  /** The command stream the entry came from. */
  stream: string;
  entryId: string;
  /** The original entry's fields, as read from the stream. */
  fields: readonly string[];
  /** The terminal result (status `failed`). */
  result: CommandResult;
  /** Marker key of the entry: the command id, or `e:<entryId>` when it has none. */
  key: string;
  /** Marker lifetime: it must outlive every redelivery of the command. */
  ttlMs: number;
}

/** The dead-letter entry's fields (for publishOnce-2.lua, or a script that publishes it with other steps). */
export function deadLetterFields(d: Omit<DeadLetter, 'key' | 'ttlMs'>): (string | number)[] {
  return [
    'd',
    d.deviceId,
    'i',
    d.result.commandId,
    'src',
    d.stream,
    'e',
    d.entryId,
    'ec',
    d.result.errorClass ?? 'Error',
    'm',
    d.result.message ?? '',
    'at',
    d.result.attempts,
    'o',
    JSON.stringify(Object.fromEntries(fieldMap(d.fields))),
  ];
}

/** Appends the dead letter unless it is there already; true when this call appended it. */
export async function publishDeadLetter(run: ScriptCommands, keys: Keys, d: DeadLetter): Promise<boolean> {
  const [added] = await run.publishOnce(
    keys.deadLetters(),
    keys.publishedMarker(keys.deadLetters(), d.deviceId, d.key),
    Math.max(1000, d.ttlMs),
    0,
    ...deadLetterFields(d),
  );
  return added === 1;
}
