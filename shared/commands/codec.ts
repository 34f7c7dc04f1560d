/**
 * The control-command codec: the one place that encodes, decodes and validates
 * command entries (a device's command stream) and result entries (the results
 * stream). Agents, the gateway (for MQTT devices) and `ctl` all go through it;
 * nothing parses a command or result entry by hand. Field layout: docs/commands.md.
 */
import { ValidationError } from '../errors.js';
import { DEVICE_ID_PATTERN } from '../keys.js';

export const COMMAND_VERSION = 1;

/** Command stream fields. Short on purpose: they are stored in every entry. */
export const COMMAND_FIELD = {
  id: 'i',
  name: 'n',
  args: 'a',
  issuedAt: 't',
  deadline: 'x',
  correlationId: 'c',
  version: 'v',
} as const;

/** Command ids and correlation ids end up in key names, so they are restricted like device ids. */
export const COMMAND_ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;
export const COMMAND_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
export const MAX_ARGS_BYTES = 8192;

export type CommandArgs = { readonly [key: string]: unknown };

export interface Command {
  /** Idempotency key: a command id takes effect at most once per device. */
  readonly id: string;
  readonly name: string;
  readonly args: CommandArgs;
  /** Sender's time of issue, ms since the epoch. */
  readonly issuedAt: number;
  /** After this time (ms since the epoch) the command is never executed; it ends `expired`. */
  readonly deadline: number;
  /** Ties the commands of one request together (a group send shares it); defaults to the id. */
  readonly correlationId: string;
  readonly version: number;
}

/** Statuses that end a command; exactly one is recorded per (device, command id). */
export const TERMINAL_STATUSES = ['succeeded', 'failed', 'rejected', 'expired', 'unknown'] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

/**
 * Progress before the end, in the ledger: `queued` (in the device's stream),
 * `delivered` (the device read it), `running` (a handler started).
 */
export const PROGRESS_STATUSES = ['queued', 'delivered', 'running'] as const;
export type ProgressStatus = (typeof PROGRESS_STATUSES)[number];
export type CommandStatus = TerminalStatus | ProgressStatus;

export function isTerminal(status: string): status is TerminalStatus {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

/** Results stream fields. */
export const RESULT_FIELD = {
  commandId: 'i',
  deviceId: 'd',
  status: 's',
  name: 'n',
  correlationId: 'c',
  entryId: 'e',
  issuedAt: 't',
  deliveredAt: 'td',
  startedAt: 'ts',
  finishedAt: 'tf',
  attempts: 'at',
  output: 'o',
  errorClass: 'ec',
  message: 'm',
  version: 'v',
} as const;

export interface CommandResult {
  /** The command id; empty when a malformed entry carried none (see entryId). */
  readonly commandId: string;
  readonly deviceId: string;
  readonly status: TerminalStatus;
  /** Command name, when the entry had a readable one. */
  readonly name?: string;
  readonly correlationId?: string;
  /** Id of the entry in the device's command stream that carried the command. */
  readonly entryId?: string;
  readonly issuedAt?: number;
  /** When the device read the command (ms since the epoch). */
  readonly deliveredAt?: number;
  /** When the (last) handler attempt started. */
  readonly startedAt?: number;
  readonly finishedAt: number;
  /** Handler attempts made (0 when it never ran). */
  readonly attempts: number;
  /** The handler's JSON output, for `succeeded`. */
  readonly output?: unknown;
  /** Error class (`failed`), or the kind of refusal (`rejected`, e.g. ValidationError, UnknownCommand). */
  readonly errorClass?: string;
  /** Why it failed, was rejected, expired or is unknown. */
  readonly message?: string;
  readonly version: number;
}

/** What a sender supplies; id, issuedAt, correlationId are filled in when missing. */
export interface CommandInput {
  id: string;
  name: string;
  args?: CommandArgs;
  issuedAt: number;
  deadline: number;
  correlationId?: string;
}

function requireMatch(field: string, value: unknown, pattern: RegExp): string {
  if (typeof value !== 'string' || !pattern.test(value)) {
    throw new ValidationError(field, `must match ${pattern}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function requireTime(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ValidationError(
      field,
      `must be ms since the epoch (an integer >= 0), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function requireArgs(value: unknown): CommandArgs {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError('args', `must be a JSON object, got ${JSON.stringify(value)?.slice(0, 80)}`);
  }
  return value as CommandArgs;
}

/** Validates a command from any source (library call, CLI, MQTT) and returns it complete. */
export function validateCommand(input: unknown): Command {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ValidationError('command', 'must be an object');
  }
  const c = input as Record<string, unknown>;
  const id = requireMatch('id', c.id, COMMAND_ID_PATTERN);
  const name = requireMatch('name', c.name, COMMAND_NAME_PATTERN);
  const args = requireArgs(c.args);
  const bytes = Buffer.byteLength(JSON.stringify(args));
  if (bytes > MAX_ARGS_BYTES) {
    throw new ValidationError('args', `is ${bytes} bytes, over the ${MAX_ARGS_BYTES}-byte limit`);
  }
  const issuedAt = requireTime('issuedAt', c.issuedAt);
  const deadline = requireTime('deadline', c.deadline);
  if (deadline < issuedAt) {
    throw new ValidationError(
      'deadline',
      `(${deadline}) is before issuedAt (${issuedAt}); give a positive ttl`,
    );
  }
  const correlationId =
    c.correlationId === undefined ? id : requireMatch('correlationId', c.correlationId, COMMAND_ID_PATTERN);
  const version = c.version === undefined ? COMMAND_VERSION : c.version;
  if (version !== COMMAND_VERSION) {
    throw new ValidationError('version', `must be ${COMMAND_VERSION}, got ${JSON.stringify(version)}`);
  }
  return { id, name, args, issuedAt, deadline, correlationId, version: COMMAND_VERSION };
}

/** Flat stream fields of a validated command, in the order XADD takes them. */
export function commandFields(c: Command): string[] {
  return [
    COMMAND_FIELD.id,
    c.id,
    COMMAND_FIELD.name,
    c.name,
    COMMAND_FIELD.args,
    JSON.stringify(c.args),
    COMMAND_FIELD.issuedAt,
    String(c.issuedAt),
    COMMAND_FIELD.deadline,
    String(c.deadline),
    COMMAND_FIELD.correlationId,
    c.correlationId,
    COMMAND_FIELD.version,
    String(c.version),
  ];
}

/** Validates and encodes in one step. */
export function encodeCommand(input: unknown): { command: Command; fields: string[] } {
  const command = validateCommand(input);
  return { command, fields: commandFields(command) };
}

export function fieldMap(fields: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  return map;
}

function parseInteger(field: string, text: string): number {
  if (!/^\d{1,16}$/.test(text))
    throw new ValidationError(field, `must be an integer, got ${JSON.stringify(text)}`);
  return Number(text);
}

/**
 * Decodes a command stream entry. Throws ValidationError naming the field for a
 * missing field, bad JSON or a wrong type; the worker turns that into `rejected`.
 */
export function decodeCommand(fields: readonly string[]): Command {
  const map = fieldMap(fields);
  const get = (name: keyof typeof COMMAND_FIELD): string => {
    const v = map.get(COMMAND_FIELD[name]);
    if (v === undefined)
      throw new ValidationError(name, `is missing (stream field "${COMMAND_FIELD[name]}")`);
    return v;
  };
  const id = get('id');
  let args: unknown;
  const argsText = map.get(COMMAND_FIELD.args);
  if (argsText !== undefined) {
    try {
      args = JSON.parse(argsText);
    } catch {
      throw new ValidationError('args', `is not valid JSON: ${JSON.stringify(argsText.slice(0, 80))}`);
    }
  }
  const version = map.get(COMMAND_FIELD.version);
  return validateCommand({
    id,
    name: get('name'),
    args,
    issuedAt: parseInteger('issuedAt', get('issuedAt')),
    deadline: parseInteger('deadline', get('deadline')),
    correlationId: map.get(COMMAND_FIELD.correlationId),
    version: version === undefined ? undefined : Number(version),
  });
}

/** What can be read from an entry that failed to decode, to label its `rejected` result. */
export function salvageCommand(fields: readonly string[]): {
  id?: string;
  name?: string;
  correlationId?: string;
} {
  const map = fieldMap(fields);
  const pick = (f: string, pattern: RegExp) => {
    const v = map.get(f);
    return v !== undefined && pattern.test(v) ? v : undefined;
  };
  return {
    id: pick(COMMAND_FIELD.id, COMMAND_ID_PATTERN),
    name: pick(COMMAND_FIELD.name, COMMAND_NAME_PATTERN),
    correlationId: pick(COMMAND_FIELD.correlationId, COMMAND_ID_PATTERN),
  };
}

/**
 * The rejected-stream entry of a malformed command entry (docs/guarantees.md §5): `src` its
 * command stream, `e` its entry id, `reason` why it was refused, `f` its raw fields (JSON array).
 */
export function rejectedCommandFields(r: {
  stream: string;
  entryId: string;
  reason: string;
  fields: readonly string[];
}): string[] {
  return ['src', r.stream, 'e', r.entryId, 'reason', r.reason, 'f', JSON.stringify(r.fields)];
}

/** Flat result fields; optional fields are left out when absent. */
export function resultFields(r: CommandResult): string[] {
  if (!DEVICE_ID_PATTERN.test(r.deviceId))
    throw new ValidationError('deviceId', `must match ${DEVICE_ID_PATTERN}`);
  if (!isTerminal(r.status))
    throw new ValidationError('status', `must be one of ${TERMINAL_STATUSES.join(', ')}`);
  const out: string[] = [
    RESULT_FIELD.commandId,
    r.commandId,
    RESULT_FIELD.deviceId,
    r.deviceId,
    RESULT_FIELD.status,
    r.status,
  ];
  const add = (f: string, v: string | number | undefined) => {
    if (v !== undefined) out.push(f, String(v));
  };
  add(RESULT_FIELD.name, r.name);
  add(RESULT_FIELD.correlationId, r.correlationId);
  add(RESULT_FIELD.entryId, r.entryId);
  add(RESULT_FIELD.issuedAt, r.issuedAt);
  add(RESULT_FIELD.deliveredAt, r.deliveredAt);
  add(RESULT_FIELD.startedAt, r.startedAt);
  add(RESULT_FIELD.finishedAt, r.finishedAt);
  add(RESULT_FIELD.attempts, r.attempts);
  if (r.output !== undefined) add(RESULT_FIELD.output, JSON.stringify(r.output));
  add(RESULT_FIELD.errorClass, r.errorClass);
  add(RESULT_FIELD.message, r.message);
  add(RESULT_FIELD.version, r.version);
  return out;
}

/** One field of encoded result fields (keys at even positions), without decoding the rest. */
export function resultField(fields: readonly string[], key: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === key) return fields[i + 1];
  return undefined;
}

/** Decodes a results stream entry (or the result copy kept in the ledger). */
export function decodeResult(fields: readonly string[]): CommandResult {
  const map = fieldMap(fields);
  const get = (name: keyof typeof RESULT_FIELD): string => {
    const v = map.get(RESULT_FIELD[name]);
    if (v === undefined) throw new ValidationError(name, `is missing from the result entry`);
    return v;
  };
  const num = (name: keyof typeof RESULT_FIELD): number | undefined => {
    const v = map.get(RESULT_FIELD[name]);
    return v === undefined ? undefined : parseInteger(name, v);
  };
  const status = get('status');
  if (!isTerminal(status)) throw new ValidationError('status', `"${status}" is not a terminal status`);
  let output: unknown;
  const outputText = map.get(RESULT_FIELD.output);
  if (outputText !== undefined) {
    try {
      output = JSON.parse(outputText);
    } catch {
      throw new ValidationError('output', 'is not valid JSON');
    }
  }
  return {
    commandId: get('commandId'),
    deviceId: get('deviceId'),
    status,
    name: map.get(RESULT_FIELD.name),
    correlationId: map.get(RESULT_FIELD.correlationId),
    entryId: map.get(RESULT_FIELD.entryId),
    issuedAt: num('issuedAt'),
    deliveredAt: num('deliveredAt'),
    startedAt: num('startedAt'),
    finishedAt: num('finishedAt') ?? 0,
    attempts: num('attempts') ?? 0,
    output,
    errorClass: map.get(RESULT_FIELD.errorClass),
    message: map.get(RESULT_FIELD.message),
    version: num('version') ?? COMMAND_VERSION,
  };
}
