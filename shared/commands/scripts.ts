/**
 * Typed calls of the command scripts: one function per Lua script
 * (shared/redis/scripts/<name>-<keys>.lua), taking its keys and arguments by
 * name and answering with a typed reply. The argument order each script's
 * header lists is written here once; no call site passes positional script
 * arguments or parses a script's reply.
 */
import type { RedisClient } from '../redis/connect.js';
import { type ReplicaWait, writeDurably } from '../redis/durability.js';
import { type ScriptCommands, scripts } from '../redis/scripts.js';
import type { TerminalStatus } from './codec.js';
import { decodeStoredResult, encodeStoredResult } from './ledger.js';

type Arg = string | number;

/**
 * Runs the script `name`; with `wait` (the replicated durability level), pipelined with WAIT
 * behind it, so its reply counts only once replicas have the write (shared/redis/durability.ts).
 */
function writeScript<N extends keyof ScriptCommands>(
  client: RedisClient,
  wait: ReplicaWait | undefined,
  name: N,
  ...args: Parameters<ScriptCommands[N]>
): ReturnType<ScriptCommands[N]> {
  const call = (target: object) =>
    (target as Record<N, (...a: Parameters<ScriptCommands[N]>) => unknown>)[name](...args);
  const commands = scripts(client);
  if (!wait) return call(commands) as ReturnType<ScriptCommands[N]>;
  return writeDurably(client, wait, (pipeline) => void call(pipeline)) as ReturnType<ScriptCommands[N]>;
}

export interface EnqueueArgs {
  stream: string;
  ledger: string;
  /** The doorbell stream on a standalone server; in a Cluster, `stream` again with `doorbellMaxLen` 0. */
  doorbell: string;
  expireAt: number;
  now: number;
  /** 0: do not ring. */
  doorbellMaxLen: number;
  deviceId: string;
  fields: readonly string[];
}
export type Enqueued = { queued: true; entryId: string } | { queued: false; status: string };

/** enqueueCommand-3.lua: stream entry, `queued` ledger and doorbell in one step, once per command id. */
export async function enqueueCommand(
  client: RedisClient,
  a: EnqueueArgs,
  wait?: ReplicaWait,
): Promise<Enqueued> {
  const [ok, value] = await writeScript(
    client,
    wait,
    'enqueueCommand',
    a.stream,
    a.ledger,
    a.doorbell,
    a.expireAt,
    a.now,
    a.doorbellMaxLen,
    a.deviceId,
    ...a.fields,
  );
  return ok === 1 ? { queued: true, entryId: value } : { queued: false, status: value };
}

export interface PublishOnceArgs {
  stream: string;
  marker: string;
  /** Marker lifetime: it must outlive every redelivery of the command. */
  ttlMs: number;
  /** Approximate MAXLEN of the stream, 0 = no trimming. */
  maxLen: number;
  fields: readonly Arg[];
}

/** publishOnce-2.lua: appends unless the marker says it was; `added` false for a repeat. */
export async function publishOnce(
  client: RedisClient,
  a: PublishOnceArgs,
  wait?: ReplicaWait,
): Promise<{ added: boolean; entryId: string }> {
  const [added, entryId] = await writeScript(
    client,
    wait,
    'publishOnce',
    a.stream,
    a.marker,
    Math.max(1000, Math.round(a.ttlMs)),
    a.maxLen,
    ...a.fields,
  );
  return { added: added === 1, entryId };
}

export type BeginMode = 'deliver' | 'start' | 'restart';
export type BeginCode = 'done' | 'expired' | 'lapsed' | 'running' | 'started' | 'delivered';

export interface BeginArgs {
  ledger: string;
  now: number;
  deadline: number;
  expireAt: number;
  consumer: string;
  mode: BeginMode;
}
export interface Begun {
  code: BeginCode;
  attempts: number;
  /** When the device first received it (ms); undefined when the ledger is terminal. */
  deliveredAt: number | undefined;
  /** `done`: the stored result's fields. */
  stored: string[] | undefined;
}

/** beginCommand-1.lua: records receipt and decides, atomically, whether a handler may start. */
export async function beginCommand(client: RedisClient, a: BeginArgs): Promise<Begun> {
  const [code, attempts, deliveredAt, payload] = await scripts(client).beginCommand(
    a.ledger,
    a.now,
    a.deadline,
    a.expireAt,
    a.consumer,
    a.mode,
  );
  return {
    code: code as BeginCode,
    attempts: Number(attempts),
    deliveredAt: Number(deliveredAt) || undefined,
    stored: code === 'done' && payload ? decodeStoredResult(payload) : undefined,
  };
}

export interface FinishArgs {
  ledger: string;
  expireAt: number;
  status: TerminalStatus;
  /** The result's flat fields (resultFields). */
  result: readonly string[];
  attempts: number;
}

/** finishCommand-1.lua: the first terminal result wins; answers with the one stored. */
export async function finishCommand(
  client: RedisClient,
  a: FinishArgs,
): Promise<{ fixed: boolean; result: string[] }> {
  const [fixed, stored] = await scripts(client).finishCommand(
    a.ledger,
    a.expireAt,
    a.status,
    encodeStoredResult(a.result),
    a.attempts,
  );
  // A terminal ledger without its copy (stored '') keeps ours: it is what gets published.
  return { fixed: fixed === 1, result: stored ? decodeStoredResult(stored) : [...a.result] };
}

export interface ConcludeArgs {
  ledger: string;
  results: string;
  resultsMarker: string;
  deadLetters: string;
  deadLetterMarker: string;
  commandStream: string;
  expireAt: number;
  status: TerminalStatus;
  result: readonly string[];
  attempts: number;
  markerTtlMs: number;
  resultsMaxLen: number;
  group: string;
  entryId: string;
  /** The dead letter's fields; empty unless `failed`. */
  deadLetter: readonly Arg[];
  /** A read-only command that started at once: its receipt and start, recorded with its result. */
  early?: { receivedAt: number; startedAt: number; consumer: string };
}
export type Concluded =
  | { concluded: true; fixed: boolean; resultAdded: boolean; deadLetterAdded: boolean }
  | { concluded: false; fixed: false; stored: string[] };

/**
 * concludeCommand-6.lua (standalone only, its keys span slots): ledger finish, dead letter,
 * result and XACK in one call; when the ledger holds another result, nothing is done and that
 * one is returned.
 */
export async function concludeCommand(
  client: RedisClient,
  a: ConcludeArgs,
  wait?: ReplicaWait,
): Promise<Concluded> {
  const early = a.early ? [a.early.receivedAt, a.early.startedAt, a.early.consumer] : ['', '', ''];
  const [fixed, concluded, stored, resultAdded, deadLetterAdded] = await writeScript(
    client,
    wait,
    'concludeCommand',
    a.ledger,
    a.results,
    a.resultsMarker,
    a.deadLetters,
    a.deadLetterMarker,
    a.commandStream,
    a.expireAt,
    a.status,
    encodeStoredResult(a.result),
    a.attempts,
    Math.max(1000, Math.round(a.markerTtlMs)),
    a.resultsMaxLen,
    a.group,
    a.entryId,
    a.deadLetter.length,
    ...early,
    ...a.deadLetter,
    ...a.result,
  );
  if (concluded !== 1) return { concluded: false, fixed: false, stored: decodeStoredResult(stored) };
  return {
    concluded: true,
    fixed: fixed === 1,
    resultAdded: resultAdded === 1,
    deadLetterAdded: deadLetterAdded === 1,
  };
}

export interface ReplayArgs {
  stream: string;
  ledger: string;
  record: string;
  expireAt: number;
  now: number;
  recordExpireAt: number;
  replayId: string;
  fields: readonly string[];
}
export interface Replayed {
  queued: boolean;
  replayId: string;
  entryId: string;
  replayedAt: number;
}

/** replayCommand-3.lua: queues a dead letter's replay once, with its durable record. */
export async function replayCommand(
  client: RedisClient,
  a: ReplayArgs,
  wait?: ReplicaWait,
): Promise<Replayed> {
  const [code, replayId, entryId, at] = await writeScript(
    client,
    wait,
    'replayCommand',
    a.stream,
    a.ledger,
    a.record,
    a.expireAt,
    a.now,
    a.recordExpireAt,
    a.replayId,
    ...a.fields,
  );
  return { queued: Number(code) === 1, replayId, entryId, replayedAt: Number(at) };
}

export interface ExpireQueuedArgs {
  ledger: string;
  stream: string;
  now: number;
  deadline: number;
  expireAt: number;
  result: readonly string[];
  /** The command's entry id, to count a group's read as receipt (agents); undefined not to (MQTT devices). */
  entryId?: string;
}
export type ExpiredQueued = { ended: true; result: string[] } | { ended: false; status: string };

/** expireQueuedCommand-2.lua: ends a still-`queued`, unread command past its deadline as `expired`. */
export async function expireQueuedCommand(client: RedisClient, a: ExpireQueuedArgs): Promise<ExpiredQueued> {
  const [ended, value] = await scripts(client).expireQueuedCommand(
    a.ledger,
    a.stream,
    a.now,
    a.deadline,
    a.expireAt,
    encodeStoredResult(a.result),
    a.entryId ?? '',
  );
  return ended === 1 ? { ended: true, result: decodeStoredResult(value) } : { ended: false, status: value };
}
