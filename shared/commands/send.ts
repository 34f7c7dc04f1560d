/**
 * The sending side of control commands, shared by `ctl`, the gateway (MQTT
 * devices) and tests: queue a command for one device, a group or the whole
 * fleet, and wait for its terminal result.
 *
 * A command is queued with enqueueCommand-3.lua, which creates the command's
 * ledger ("queued") with the stream entry, so a retried send never queues it
 * twice. Results are read from the global results stream by a ResultWatcher
 * (one blocking reader per process, dispatching by command id); the ledger
 * holds a copy of the terminal result, so a result published before the
 * watcher started is never missed.
 */
import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import { CommandTimeoutError, ValidationError } from '../errors.js';
import { assertDeviceId, type Keys } from '../keys.js';
import type { RedisClient } from '../redis/connect.js';
import type { ReplicaWait } from '../redis/durability.js';
import { type Command, type CommandArgs, type CommandResult, decodeResult, encodeCommand } from './codec.js';
import { decodeLedger, type LedgerView } from './ledger.js';
import { enqueueCommand } from './scripts.js';

/** A new connection like `client` (a blocked read holds its connection, so blocking readers get their own). */
export function duplicateClient(client: RedisClient): RedisClient {
  return client instanceof Cluster ? client.duplicate() : client.duplicate();
}

/** How long ledgers and publish markers outlive a command's deadline (a redelivery later than this is not deduplicated). */
export const DEFAULT_LEDGER_RETENTION_MS = 24 * 3_600_000;

export interface SendOptions {
  name: string;
  args?: CommandArgs;
  /** Time to live: the command expires this long after it is issued. */
  ttlMs: number;
  /** Command id (idempotency key); a random UUID when absent. */
  id?: string;
  correlationId?: string;
  clock?: Clock;
  /** How long the ledger outlives the deadline. */
  retentionMs?: number;
  /**
   * `replicated`: the send resolves only once this many replicas have the command
   * (else ReplicationError; sending the same id again never queues it twice), so a
   * master lost right after cannot take a command its sender was told is queued.
   */
  durability?: ReplicaWait;
}

export interface Sent {
  readonly command: Command;
  readonly deviceId: string;
  /** Entry id in the device's command stream; for a duplicate send, the existing one is not returned. */
  readonly entryId: string | undefined;
  /** True when this id was already queued for the device (nothing was appended). */
  readonly duplicate: boolean;
  /** For a duplicate: the status the ledger had. */
  readonly existingStatus?: string;
}

/** Builds the command once (so a group shares id, times and correlation id). */
export function buildCommand(options: SendOptions): Command {
  const clock = options.clock ?? systemClock;
  const issuedAt = clock.now();
  if (!Number.isFinite(options.ttlMs) || options.ttlMs <= 0) {
    throw new ValidationError('ttl', `must be a positive duration, got ${options.ttlMs}`);
  }
  const id = options.id ?? randomUUID();
  return encodeCommand({
    id,
    name: options.name,
    args: options.args ?? {},
    issuedAt,
    deadline: issuedAt + Math.round(options.ttlMs),
    correlationId: options.correlationId ?? id,
  }).command;
}

/** Queues a validated command for one device. */
export async function queueCommand(
  client: RedisClient,
  keys: Keys,
  deviceId: string,
  command: Command,
  options: { retentionMs?: number; clock?: Clock; durability?: ReplicaWait } = {},
): Promise<Sent> {
  assertDeviceId(deviceId);
  const { fields } = encodeCommand(command);
  const now = (options.clock ?? systemClock).now();
  const expireAt = command.deadline + (options.retentionMs ?? DEFAULT_LEDGER_RETENTION_MS);
  // On one server the script rings the doorbell with the entry; in a Cluster the doorbell is in
  // another slot, so it rings once the entry exists (KEYS[3] then only repeats the device's slot).
  const cluster = client instanceof Cluster;
  const stream = keys.commands(deviceId);
  const enqueued = await enqueueCommand(
    client,
    {
      stream,
      ledger: keys.commandLedger(deviceId, command.id),
      doorbell: cluster ? stream : keys.commandDoorbell(),
      expireAt,
      now,
      doorbellMaxLen: cluster ? 0 : DOORBELL_MAX_LEN,
      deviceId,
      fields,
    },
    options.durability,
  );
  if (!enqueued.queued)
    return { command, deviceId, entryId: undefined, duplicate: true, existingStatus: enqueued.status };
  if (cluster) await ringDoorbell(client, keys, deviceId);
  return { command, deviceId, entryId: enqueued.entryId, duplicate: false };
}

/** Approximate length of the doorbell stream: it only needs to cover what gateways read in one blocked read. */
export const DOORBELL_MAX_LEN = 10_000;

/**
 * Tells gateways that a device's command stream has a new entry (gateway/commands/doorbell.ts
 * blocks on this stream), so MQTT devices get commands without waiting for a
 * poll. A hint only: the command stream stays the source of truth and gateways
 * still poll it now and then, so a doorbell that fails or is trimmed unread
 * delays a command, never loses it. Rung after the entry exists, so a gateway
 * that wakes up finds it. Agents read their own stream and ignore it.
 */
export async function ringDoorbell(client: RedisClient, keys: Keys, deviceId: string): Promise<void> {
  try {
    await client.xadd(keys.commandDoorbell(), 'MAXLEN', '~', DOORBELL_MAX_LEN, '*', 'd', deviceId);
  } catch {
    // The command is queued; the gateways' fallback poll finds it.
  }
}

/** Sends a command to one device. */
export async function sendCommand(
  client: RedisClient,
  keys: Keys,
  deviceId: string,
  options: SendOptions,
): Promise<Sent> {
  return queueCommand(client, keys, deviceId, buildCommand(options), options);
}

export interface Targets {
  devices?: readonly string[];
  tags?: readonly string[];
  fleet?: boolean;
}

/**
 * The device ids a group send reaches: the union of the listed devices, the
 * members of each tag and (with fleet) every registered device, each once.
 */
export async function resolveTargets(client: RedisClient, keys: Keys, targets: Targets): Promise<string[]> {
  const ids = new Set<string>(targets.devices ?? []);
  for (const tag of targets.tags ?? []) for (const id of await client.smembers(keys.tag(tag))) ids.add(id);
  if (targets.fleet) for (const id of await client.smembers(keys.fleet())) ids.add(id);
  for (const id of ids) assertDeviceId(id);
  return [...ids].sort();
}

/**
 * Sends one command to a group: every device gets the same command id and
 * correlation id; each device's ledger makes it take effect there once.
 */
export async function sendToGroup(
  client: RedisClient,
  keys: Keys,
  targets: Targets,
  options: SendOptions,
): Promise<Sent[]> {
  const devices = await resolveTargets(client, keys, targets);
  if (devices.length === 0) {
    throw new ValidationError(
      'targets',
      'no device matches (check the device ids, tags, or that agents have registered)',
    );
  }
  const command = buildCommand(options);
  return Promise.all(devices.map((d) => queueCommand(client, keys, d, command, options)));
}

/** Registers a device in the fleet and tag sets (the agent does this at start). */
export async function registerDevice(
  client: RedisClient,
  keys: Keys,
  deviceId: string,
  tags: readonly string[],
): Promise<void> {
  assertDeviceId(deviceId);
  await client.sadd(keys.fleet(), deviceId);
  for (const tag of tags) await client.sadd(keys.tag(tag), deviceId);
}

export type { LedgerView };

/** What the ledger says about a command on a device (`none` when unknown or expired from the ledger). */
export async function commandStatus(
  client: RedisClient,
  keys: Keys,
  deviceId: string,
  commandId: string,
): Promise<LedgerView> {
  return decodeLedger(await client.hgetall(keys.commandLedger(deviceId, commandId)));
}

interface Waiter {
  resolve(r: CommandResult): void;
}

/**
 * One blocking reader of the results stream per process, dispatching results
 * to waiters by (device, command id). It uses its own connection, since a
 * blocked XREAD holds the connection it runs on.
 */
export class ResultWatcher {
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly reader: RedisClient;
  private running = false;
  private loop: Promise<void> | undefined;
  private lastId = '0-0';
  private starting: Promise<void> | undefined;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly blockMs = 1000,
  ) {
    this.reader = duplicateClient(client);
    this.reader.on('error', () => {
      // reconnects by itself; the read loop retries
    });
  }

  /** Starts reading from the current end of the results stream. */
  async start(): Promise<void> {
    // Callers that start it at once share one start (one reader loop, one starting point).
    this.starting ??= (async () => {
      const last = await this.client.xrevrange(this.keys.results(), '+', '-', 'COUNT', 1);
      this.lastId = last[0]?.[0] ?? '0-0';
      this.running = true;
      this.loop = this.run();
    })().catch((err) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.starting = undefined;
    this.reader.disconnect();
    await this.loop?.catch(() => undefined);
  }

  /**
   * Resolves with the terminal result, or rejects with CommandTimeoutError
   * naming the last progress recorded in the ledger.
   */
  async wait(deviceId: string, commandId: string, timeoutMs: number): Promise<CommandResult> {
    if (!this.running) await this.start();
    const expected = this.expect(deviceId, commandId);
    // Registered first, then the ledger: a result fixed before the watcher saw it is found here.
    return this.settle(expected, deviceId, commandId, timeoutMs, true);
  }

  /**
   * Sends a command to one device and waits for its terminal result. The
   * watcher listens before the command is queued, so a result it reads is
   * never one it missed, and the ledger is read only for a duplicate send
   * (whose result may predate the watcher) or on timeout: one round trip
   * less than send, then wait.
   */
  async sendAndWait(
    deviceId: string,
    options: SendOptions,
    timeoutMs: number,
  ): Promise<{ sent: Sent; result: CommandResult }> {
    if (!this.running) await this.start();
    const command = buildCommand(options);
    const expected = this.expect(deviceId, command.id);
    let sent: Sent;
    try {
      sent = await queueCommand(this.client, this.keys, deviceId, command, options);
    } catch (err) {
      expected.cancel();
      throw err;
    }
    const result = await this.settle(expected, deviceId, command.id, timeoutMs, sent.duplicate);
    return { sent, result };
  }

  /** Registers a waiter for one command's result (synchronously, so nothing read after this is missed). */
  private expect(deviceId: string, commandId: string): { arrived: Promise<CommandResult>; cancel(): void } {
    const key = `${deviceId}\u0000${commandId}`;
    let waiter!: Waiter;
    const arrived = new Promise<CommandResult>((resolve) => {
      waiter = { resolve };
    });
    const list = this.waiters.get(key);
    if (list) list.push(waiter);
    else this.waiters.set(key, [waiter]);
    const cancel = () => {
      const rest = (this.waiters.get(key) ?? []).filter((w) => w !== waiter);
      if (rest.length) this.waiters.set(key, rest);
      else this.waiters.delete(key);
    };
    return { arrived, cancel };
  }

  private async settle(
    expected: { arrived: Promise<CommandResult>; cancel(): void },
    deviceId: string,
    commandId: string,
    timeoutMs: number,
    checkLedger: boolean,
  ): Promise<CommandResult> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      if (checkLedger) {
        const ledger = await commandStatus(this.client, this.keys, deviceId, commandId);
        if (ledger.result) return ledger.result;
      }
      const outcome = await Promise.race([expected.arrived, timedOut]);
      if (outcome !== 'timeout') return outcome;
      const last = await commandStatus(this.client, this.keys, deviceId, commandId);
      if (last.result) return last.result;
      throw new CommandTimeoutError(commandId, deviceId, timeoutMs, last.status);
    } finally {
      clearTimeout(timer);
      expected.cancel();
    }
  }

  private async run(): Promise<void> {
    const stream = this.keys.results();
    while (this.running) {
      let reply: [string, [string, string[]][]][] | null;
      try {
        reply = (await this.reader.xread(
          'COUNT',
          1000,
          'BLOCK',
          this.blockMs,
          'STREAMS',
          stream,
          this.lastId,
        )) as [string, [string, string[]][]][] | null;
      } catch {
        if (!this.running) return;
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      for (const [, entries] of reply ?? []) {
        for (const [id, fields] of entries) {
          this.lastId = id;
          if (this.waiters.size === 0) continue;
          let result: CommandResult;
          try {
            result = decodeResult(fields);
          } catch {
            continue; // not ours to judge here; a malformed result entry never stops the watcher
          }
          const list = this.waiters.get(`${result.deviceId}\u0000${result.commandId}`);
          for (const w of list ?? []) w.resolve(result);
        }
      }
    }
  }
}

/** Waits for one command's terminal result with a watcher of its own (for one-off callers such as the CLI). */
export async function waitForResult(
  client: RedisClient,
  keys: Keys,
  deviceId: string,
  commandId: string,
  timeoutMs: number,
): Promise<CommandResult> {
  const watcher = new ResultWatcher(client, keys);
  try {
    return await watcher.wait(deviceId, commandId, timeoutMs);
  } finally {
    await watcher.stop();
  }
}
