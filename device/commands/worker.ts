/**
 * The agent's command worker: reads the device's command stream through a
 * consumer group (stable consumer name, blocking XREADGROUP) and executes the
 * commands one at a time, in stream order.
 *
 * Per command (see docs/commands.md for why each step is where it is):
 *   1. decode; a malformed entry ends `rejected` with the reason;
 *   2. the local journal says it already took effect -> report that result;
 *   3. beginCommand-1.lua (the Redis ledger, atomic): already terminal ->
 *      republish and ack; past the deadline -> never run: `expired` if no
 *      attempt started, else `unknown` (it may have taken effect); an
 *      earlier attempt left running -> rerun only if the handler is idempotent
 *      or the journal shows that attempt failed before its effect, else `unknown`;
 *   4. journal `start` (fsync), run the handler with its timeout, journal `done`;
 *      transient errors retry with exponential backoff and jitter, and after
 *      commands.maxAttempts the command is dead-lettered and ends `failed`;
 *   5. the one terminal result is fixed in the ledger (first one wins),
 *      published to the global results stream at most once (and, when
 *      failed, dead-lettered once), and only then acked. On a standalone
 *      server that is one script call, concludeCommand-6.lua (one round trip
 *      after the handler); on a Cluster the ledger (device slot) and the
 *      streams (their own slots) cannot share a script, so finishCommand-1.lua,
 *      publishOnce-2.lua and XACK run one after another.
 * Pending entries of a consumer that died are claimed with XAUTOCLAIM after
 * commands.claimIdle, which must exceed every handler's timeout plus
 * commands.retryMaxDelay. After any Redis error the worker re-reads its own
 * pending entries from 0, so the rest of an interrupted batch keeps its order.
 */
import { Cluster } from 'ioredis';
import type { Clock } from '#shared/clock.js';
import { systemClock } from '#shared/clock.js';
import {
  COMMAND_VERSION,
  type Command,
  type CommandResult,
  decodeCommand,
  decodeResult,
  RESULT_FIELD,
  resultField,
  resultFields,
  salvageCommand,
  type TerminalStatus,
} from '#shared/commands/codec.js';
import { deadLetterFields } from '#shared/commands/deadletter.js';
import { duplicateClient, registerDevice } from '#shared/commands/send.js';
import { CommandRejectedError, ConfigError, HandlerTimeoutError, ValidationError } from '#shared/errors.js';
import type { Keys } from '#shared/keys.js';
import { EpisodeLog, type Logger } from '#shared/log.js';
import { Counter, Histogram, type Registry } from '#shared/metrics.js';
import { type RedisClient, reconnectDelay } from '#shared/redis/connect.js';
import { type ScriptCommands, scripts } from '#shared/redis/scripts.js';
import { GroupReader, type StreamEntry } from '#shared/streams/group-reader.js';
import type { CommandHandler, HandlerRegistry } from './handlers.js';
import type { CommandJournal } from './journal.js';
import type { CommandConfig } from './options.js';

export interface WorkerOptions {
  deviceId: string;
  tags: readonly string[];
  consumer: string;
  group: string;
  blockTimeMs: number;
  readCount: number;
  maxAttempts: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  claimIdleMs: number;
  claimIntervalMs: number;
  ledgerRetentionMs: number;
  /** Read-only commands start at once only while their deadline is further away than this. */
  clockSkewAllowanceMs: number;
  resultsMaxLen: number;
  /** Tests only: pause between a handler's end and recording its result. */
  delayAfterHandlerMs: number;
}

export function workerOptions(
  config: CommandConfig & { 'device.id': string; 'device.tags': readonly string[] },
): WorkerOptions {
  return {
    deviceId: config['device.id'],
    tags: config['device.tags'],
    consumer: config['commands.consumer'] ?? config['device.id'],
    group: config['commands.group'],
    blockTimeMs: config['commands.blockTime'],
    readCount: config['commands.readCount'],
    maxAttempts: config['commands.maxAttempts'],
    retryBaseDelayMs: config['commands.retryBaseDelay'],
    retryMaxDelayMs: config['commands.retryMaxDelay'],
    claimIdleMs: config['commands.claimIdle'],
    claimIntervalMs: config['commands.claimInterval'],
    ledgerRetentionMs: config['commands.ledgerRetention'],
    clockSkewAllowanceMs: config['commands.clockSkewAllowance'],
    resultsMaxLen: config['commands.resultsMaxLen'],
    delayAfterHandlerMs: config['commands.testDelayAfterHandler'],
  };
}

export interface CommandMetrics {
  results: Counter<'status'>;
  attempts: Counter;
  duplicates: Counter;
  claimed: Counter;
  deadLetters: Counter;
  startedAtOnce: Counter;
  seconds: Histogram;
}

export function createCommandMetrics(registry: Registry): CommandMetrics {
  const registers = [registry];
  return {
    results: new Counter({
      name: 'commands_results_total',
      help: 'Terminal command results recorded by this device, by status',
      labelNames: ['status'],
      registers,
    }),
    attempts: new Counter({ name: 'commands_attempts_total', help: 'Handler attempts started', registers }),
    duplicates: new Counter({
      name: 'commands_duplicates_total',
      help: 'Deliveries of commands that had already ended (deduplicated, not run again)',
      registers,
    }),
    claimed: new Counter({
      name: 'commands_claimed_total',
      help: 'Pending commands claimed from dead consumers (XAUTOCLAIM)',
      registers,
    }),
    deadLetters: new Counter({
      name: 'commands_dead_letters_total',
      help: 'Commands dead-lettered',
      registers,
    }),
    startedAtOnce: new Counter({
      name: 'commands_started_at_once_total',
      help: 'Read-only commands started as soon as they were read, their receipt recorded with their result',
      registers,
    }),
    seconds: new Histogram({
      name: 'commands_seconds',
      help: 'From reading a command to its result being recorded',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    }),
  };
}

/** When a read-only command that started at once was received and started (ms). */
interface StartedAtOnce {
  receivedAt: number;
  startedAt: number;
}

/** Error class name for the result's `ec` field. */
function errorClass(err: unknown): string {
  if (err instanceof CommandRejectedError) return err.kind;
  if (err instanceof Error) return err.name || err.constructor.name;
  return typeof err;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A read-only command that started at once and is still running after this
 * long gets `running` in its ledger (beginCommand), so the progress a sender
 * sees stays true; a quick one (a ping) has its receipt recorded with its result.
 */
const RECORD_RUNNING_AFTER_MS = 20;

const isPromiseLike = (v: unknown): v is PromiseLike<unknown> =>
  typeof (v as { then?: unknown } | null)?.then === 'function';

export class CommandWorker {
  private readonly connection: RedisClient;
  private readonly reader: GroupReader;
  private readonly run: ScriptCommands;
  private readonly stream: string;
  /** Standalone server: a command ends in one script call (its keys may span slots). */
  private readonly oneScript: boolean;
  private running = false;
  private loop: Promise<void> | undefined;
  private nextClaimAt = 0;
  private readonly clock: Clock;
  private readonly redisDown: EpisodeLog;
  /** Processed so far (all outcomes), for tests and logs. */
  processed = 0;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly handlers: HandlerRegistry,
    private readonly journal: CommandJournal,
    readonly options: WorkerOptions,
    private readonly deps: { logger: Logger; metrics: CommandMetrics; clock?: Clock },
  ) {
    // A live consumer's entry stays idle for up to one attempt (the handler's timeout) plus the
    // backoff before the XCLAIM that resets its idle time: claiming sooner would take it mid-run.
    const busyMs = handlers.maxTimeoutMs + options.retryMaxDelayMs;
    if (options.claimIdleMs <= busyMs) {
      throw new ConfigError(
        'commands.claimIdle',
        'config',
        `(${options.claimIdleMs} ms) must exceed the longest handler timeout plus commands.retryMaxDelay (${handlers.maxTimeoutMs} + ${options.retryMaxDelayMs} ms), or a live consumer's command could be claimed mid-run`,
      );
    }
    this.clock = deps.clock ?? systemClock;
    this.stream = keys.commands(options.deviceId);
    this.run = scripts(client);
    this.oneScript = !(client instanceof Cluster);
    // A blocked read holds its connection: the reader gets one of its own.
    this.connection = duplicateClient(client);
    this.connection.on('error', () => {
      // the read loop reports outages once per episode
    });
    this.reader = new GroupReader(client, this.stream, {
      readClient: this.connection,
      group: options.group,
      consumer: options.consumer,
      count: options.readCount,
      blockMs: Math.min(options.blockTimeMs, options.claimIntervalMs),
    });
    this.redisDown = new EpisodeLog(deps.logger, 'command worker: Redis unavailable');
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.loop = this.main();
  }

  /** Stops reading; a command in progress finishes (bounded by timeoutMs). */
  async stop(timeoutMs = 5000): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.connection.disconnect();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.loop?.catch(() => undefined),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.journal.close();
  }

  private async setup(): Promise<void> {
    // From 0: commands queued before this device ever ran are delivered too.
    await this.reader.ensureGroup();
    await registerDevice(this.client, this.keys, this.options.deviceId, this.options.tags);
  }

  private async main(): Promise<void> {
    const o = this.options;
    let ready = false;
    let failures = 0;
    while (this.running) {
      try {
        if (!ready) {
          await this.setup();
          ready = true;
        }
        if (this.clock.now() >= this.nextClaimAt) {
          await this.claimDead();
          this.nextClaimAt = this.clock.now() + o.claimIntervalMs;
        }
        // Own pending entries first (a previous life's), then new ones. New entries were never
        // delivered to this group: the only ones a read-only command may start at once.
        const read = await this.reader.read();
        await this.handleBatch(read.entries, read.source === 'new' ? this.clock.now() : undefined);
        failures = 0;
        this.redisDown.end();
      } catch (err) {
        if (!this.running) break;
        failures++;
        this.redisDown.hit({ err: String(err) });
        // Read our own pending entries again from the start: the rest of a batch that an error cut
        // short is pending for us, and reading only new ones ('>') would run newer commands first
        // and leave those to XAUTOCLAIM (claimIdle later): per-device order would break.
        this.reader.rewind();
        await sleep(reconnectDelay(failures, 2000));
      }
    }
  }

  /** XAUTOCLAIM: take over commands another consumer read and never acknowledged (it died). */
  private async claimDead(): Promise<void> {
    for (let page = 0; page < 100 && this.running; page++) {
      const claimed = await this.reader.claim(this.options.claimIdleMs);
      if (claimed.entries.length) {
        this.deps.metrics.claimed.inc(claimed.entries.length);
        this.deps.logger.info(
          { count: claimed.entries.length },
          'claimed pending commands of a dead consumer',
        );
        await this.handleBatch(claimed.entries);
      }
      if (!claimed.more) return;
    }
  }

  /** `freshAt`: when a batch of new entries (read with '>') was read; undefined for redeliveries and claims. */
  private async handleBatch(entries: readonly StreamEntry[], freshAt?: number): Promise<void> {
    // The rest of the batch is received now: record it, but without making the first command wait
    // for that round trip (only the second one's beginCommand must come after its delivery).
    const delivered = entries.length > 1 ? this.markDelivered(entries.slice(1), freshAt) : undefined;
    delivered?.catch(() => undefined); // awaited before the second entry, which rethrows its error
    for (const [i, [entryId, fields]] of entries.entries()) {
      if (i === 1) await delivered;
      if (!this.running) return;
      const started = this.clock.now();
      if (fields === null) {
        // Deleted from the stream (trimmed) while pending: nothing to run or report.
        await this.reader.ack(entryId);
        continue;
      }
      await this.handle(entryId, fields, freshAt);
      this.processed++;
      this.deps.metrics.seconds.observe((this.clock.now() - started) / 1000);
    }
  }

  /** Entries read in one batch are received now, even if they wait behind the first: record it truthfully. */
  private async markDelivered(entries: readonly StreamEntry[], readAt?: number): Promise<void> {
    const now = readAt ?? this.clock.now();
    await Promise.all(
      entries.map(async ([, fields]) => {
        if (!fields) return;
        let c: Command;
        try {
          c = decodeCommand(fields);
        } catch {
          return;
        }
        await this.run.beginCommand(
          this.keys.commandLedger(this.options.deviceId, c.id),
          now,
          c.deadline,
          c.deadline + this.options.ledgerRetentionMs,
          this.options.consumer,
          'deliver',
        );
      }),
    );
  }

  private async handle(entryId: string, fields: string[], freshAt?: number): Promise<void> {
    let command: Command;
    try {
      command = decodeCommand(fields);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      await this.rejectMalformed(entryId, fields, err);
      return;
    }
    const o = this.options;
    const ledger = this.keys.commandLedger(o.deviceId, command.id);
    const expireAt = command.deadline + o.ledgerRetentionMs;
    const base = {
      commandId: command.id,
      deviceId: o.deviceId,
      name: command.name,
      correlationId: command.correlationId,
      entryId,
      issuedAt: command.issuedAt,
      version: COMMAND_VERSION,
    };
    const handler = this.handlers.get(command.name);
    const journaled = this.journal.get(command.id);

    // The device's own journal first: it knows what took effect even when Redis forgot.
    if (journaled?.p === 'done' && journaled.r) {
      // Killed after the handler, before the ledger was told: fix the result there first (else it
      // stays `running` for ledgerRetention, and a sender or another consumer reads it wrong).
      const recorded = JSON.parse(journaled.r) as string[];
      await this.finishEncoded(
        entryId,
        fields,
        command,
        expireAt,
        decodeResult(recorded).status,
        recorded,
        true,
      );
      return;
    }

    const begin = (mode: 'start' | 'restart' | 'deliver') =>
      this.run.beginCommand(ledger, this.clock.now(), command.deadline, expireAt, o.consumer, mode);
    // A read-only command read for the first time starts at once: it has no effect to take twice,
    // and its receipt and start are recorded with its result (docs/commands.md, "Read-only").
    // Without a handler, only record the delivery: it will be rejected, with no attempt counted.
    let atOnce = freshAt !== undefined && this.startsAtOnce(handler, command, journaled !== undefined);
    if (atOnce) this.deps.metrics.startedAtOnce.inc();
    let [code, attempts, deliveredAt, stored] = atOnce
      ? ['started', 1, String(freshAt), '']
      : await begin(handler ? 'start' : 'deliver');
    const timing = () => ({
      deliveredAt: Number(deliveredAt) || undefined,
      finishedAt: this.clock.now(),
      attempts,
    });

    if (code === 'done') {
      this.deps.metrics.duplicates.inc();
      await this.republish(entryId, fields, command, expireAt, stored);
      return;
    }
    // An attempt was started before (a crash, or a consumer that was claimed from):
    // the ledger says so, or this device's journal does (also when Redis lost the ledger).
    const interrupted = code === 'running' || code === 'lapsed' || journaled?.p === 'start';
    // The journal proves the last attempt threw before its effect: nothing took effect.
    const harmless = journaled?.p === 'failed';
    if (code === 'expired' || code === 'lapsed') {
      const deadline = new Date(command.deadline).toISOString();
      let result: CommandResult;
      if (!interrupted && !harmless) {
        result = {
          ...base,
          ...timing(),
          status: 'expired',
          message: `deadline ${deadline} passed before it ran; not executed`,
        };
      } else if (harmless) {
        // Every attempt threw (no effect) and the deadline passed before the next: as when retrying.
        result = {
          ...base,
          ...timing(),
          attempts: Math.max(attempts, journaled.a),
          status: 'failed',
          errorClass: 'DeadlinePassed',
          message: `an earlier attempt failed and deadline ${deadline} passed before it could be retried`,
        };
      } else {
        // It started, so `expired` ("never ran") would be false; past the deadline it is not run
        // again, idempotent or not. Whether it took effect is not known.
        result = {
          ...base,
          ...timing(),
          attempts: Math.max(attempts, journaled?.a ?? 0),
          status: 'unknown',
          errorClass: 'Interrupted',
          message: `an earlier attempt was interrupted and deadline ${deadline} passed before it could be retried; it may or may not have taken effect and is not run again`,
        };
      }
      await this.finish(entryId, fields, command, expireAt, result);
      return;
    }
    if (!handler) {
      await this.finish(entryId, fields, command, expireAt, {
        ...base,
        ...timing(),
        status: 'rejected',
        errorClass: 'UnknownCommand',
        message: `no handler named "${command.name}" on this device (known: ${this.handlers.names.join(', ')})`,
      });
      return;
    }
    if (interrupted && !handler.idempotent && !harmless) {
      await this.finish(entryId, fields, command, expireAt, {
        ...base,
        ...timing(),
        status: 'unknown',
        errorClass: 'Interrupted',
        message: `an earlier attempt of the non-idempotent handler "${handler.name}" was interrupted; it may or may not have taken effect and is not run again`,
      });
      return;
    }
    if (code === 'running') [code, attempts, deliveredAt, stored] = await begin('restart');

    for (;;) {
      const startedAt = this.clock.now();
      this.deps.metrics.attempts.inc();
      // A read-only command that runs longer than a moment is recorded as running, as any other is.
      const recordRunning = atOnce ? () => void begin('start').catch(() => undefined) : undefined;
      const outcome = await this.attempt(handler, command, attempts, recordRunning);
      if (outcome.kind === 'ok' || outcome.kind === 'rejected' || outcome.kind === 'unknown') {
        const result: CommandResult =
          outcome.kind === 'ok'
            ? { ...base, ...timing(), startedAt, status: 'succeeded', output: outcome.output ?? null }
            : {
                ...base,
                ...timing(),
                startedAt,
                status: outcome.kind === 'rejected' ? 'rejected' : 'unknown',
                errorClass: errorClass(outcome.error),
                message: (outcome.error as Error).message,
              };
        const encoded = resultFields(result);
        if (!handler.idempotent)
          this.journal.append({
            i: command.id,
            p: 'done',
            a: attempts,
            x: expireAt,
            r: JSON.stringify(encoded),
          });
        if (o.delayAfterHandlerMs > 0) await sleep(o.delayAfterHandlerMs);
        const early = atOnce ? { receivedAt: Number(deliveredAt), startedAt } : undefined;
        await this.finishEncoded(entryId, fields, command, expireAt, result.status, encoded, false, early);
        return;
      }
      if (atOnce) {
        // It threw: before any retry the ledger records this attempt, as beginCommand would have.
        atOnce = false;
        [code, attempts, deliveredAt, stored] = await begin('start');
        if (code === 'done') {
          this.deps.metrics.duplicates.inc();
          await this.republish(entryId, fields, command, expireAt, stored);
          return;
        }
      }
      // Transient failure: it did not take effect (the handler threw), so it may be retried.
      if (!handler.idempotent) this.journal.append({ i: command.id, p: 'failed', a: attempts, x: expireAt });
      const pastDeadline = this.clock.now() + this.backoff(attempts) > command.deadline;
      if (attempts >= o.maxAttempts || pastDeadline) {
        const err = outcome.error;
        await this.finish(entryId, fields, command, expireAt, {
          ...base,
          ...timing(),
          startedAt,
          status: 'failed',
          errorClass: errorClass(err),
          message: `${err instanceof Error ? err.message : String(err)}${
            attempts < o.maxAttempts ? ' (no retry: the deadline would pass first)' : ''
          }`,
        });
        return;
      }
      await sleep(this.backoff(attempts));
      // Keep the entry ours while we retry: XCLAIM by its owner resets its idle time.
      await this.reader.hold(entryId);
      [code, attempts, deliveredAt, stored] = await begin('restart');
      if (code === 'done') {
        await this.republish(entryId, fields, command, expireAt, stored);
        return;
      }
      if (code === 'expired' || code === 'lapsed') {
        // The attempts so far threw (no effect): the deadline passed while retrying.
        await this.finish(entryId, fields, command, expireAt, {
          ...base,
          ...timing(),
          status: 'failed',
          errorClass: errorClass(outcome.error),
          message: `${(outcome.error as Error).message} (deadline passed while retrying)`,
        });
        return;
      }
    }
  }

  /**
   * Whether a command may start before the ledger is asked: its handler is read-only (nothing it
   * does can take effect twice), no journal record of it exists, this is a standalone server (the
   * one-script conclude records its receipt), and its deadline is far enough away that the
   * gateway's sweep, which expires commands nobody received by its own clock, cannot have ended it.
   */
  private startsAtOnce(handler: CommandHandler | undefined, command: Command, journaled: boolean): boolean {
    return (
      handler?.readOnly === true &&
      !journaled &&
      this.oneScript &&
      command.deadline - this.clock.now() > this.options.clockSkewAllowanceMs
    );
  }

  /** Exponential backoff with jitter: base * 2^(attempt-1), capped, between half and all of it. */
  private backoff(attempt: number): number {
    const o = this.options;
    const exp = Math.min(o.retryMaxDelayMs, o.retryBaseDelayMs * 2 ** Math.min(attempt - 1, 20));
    return Math.round(exp / 2 + (Math.random() * exp) / 2);
  }

  /**
   * One handler attempt. `onSlow` runs if the attempt is still going after RECORD_RUNNING_AFTER_MS.
   * A handler that returns at once (ping) costs no timer, controller or promise race: nothing is
   * left to time out or abort.
   */
  private async attempt(
    handler: CommandHandler,
    command: Command,
    attempt: number,
    onSlow?: () => void,
  ): Promise<
    { kind: 'ok'; output: unknown } | { kind: 'rejected' | 'unknown' | 'transient'; error: unknown }
  > {
    if (!handler.idempotent)
      this.journal.append({
        i: command.id,
        p: 'start',
        a: attempt,
        x: command.deadline + this.options.ledgerRetentionMs,
      });
    let ac: AbortController | undefined;
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    let slow: NodeJS.Timeout | undefined;
    const ctx = {
      deviceId: this.options.deviceId,
      commandId: command.id,
      attempt,
      logger: this.deps.logger,
      // Made on first use; one asked for after the timeout comes aborted.
      get signal(): AbortSignal {
        ac ??= new AbortController();
        if (timedOut) ac.abort();
        return ac.signal;
      },
    };
    try {
      const running = handler.run(command.args, ctx);
      if (!isPromiseLike(running)) return { kind: 'ok', output: running };
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          ac?.abort();
          reject(new HandlerTimeoutError(handler.name, handler.timeoutMs));
        }, handler.timeoutMs);
      });
      if (onSlow) slow = setTimeout(onSlow, RECORD_RUNNING_AFTER_MS);
      const output = await Promise.race([running, timeout]);
      return { kind: 'ok', output };
    } catch (error) {
      if (error instanceof CommandRejectedError) return { kind: 'rejected', error };
      // A non-idempotent handler past its timeout may still take effect: retrying could double it.
      if (error instanceof HandlerTimeoutError && !handler.idempotent) return { kind: 'unknown', error };
      this.deps.logger.debug(
        { commandId: command.id, attempt, err: String(error) },
        'command attempt failed',
      );
      return { kind: 'transient', error };
    } finally {
      clearTimeout(timer);
      clearTimeout(slow);
    }
  }

  private finish(
    entryId: string,
    fields: string[],
    command: Command | undefined,
    expireAt: number,
    result: CommandResult,
  ): Promise<void> {
    return this.finishEncoded(entryId, fields, command, expireAt, result.status, resultFields(result));
  }

  /** Fixes the result in the ledger (first one wins), then publishes the stored one and acks. */
  private async finishEncoded(
    entryId: string,
    fields: string[],
    command: Command | undefined,
    expireAt: number,
    status: TerminalStatus,
    encoded: string[],
    /** A redelivery of a command that had already ended: a duplicate whoever fixes the ledger. */
    duplicate = false,
    /** A read-only command that started at once: its receipt and start, recorded with the result. */
    early?: StartedAtOnce,
  ): Promise<void> {
    if (duplicate) this.deps.metrics.duplicates.inc();
    if (!command) {
      // No readable id, so no ledger: publish once under the entry id and ack.
      await this.conclude(entryId, fields, undefined, expireAt, encoded);
      return;
    }
    const text = JSON.stringify(encoded);
    if (this.oneScript) {
      await this.settle(entryId, fields, command, expireAt, status, text, encoded, !duplicate, early);
      return;
    }
    const [fixed, stored] = await this.run.finishCommand(
      this.keys.commandLedger(this.options.deviceId, command.id),
      expireAt,
      status,
      text,
      resultField(encoded, RESULT_FIELD.attempts) ?? 0,
    );
    if (fixed !== 1 && !duplicate) this.deps.metrics.duplicates.inc();
    await this.conclude(
      entryId,
      fields,
      command,
      expireAt,
      stored ? (JSON.parse(stored) as string[]) : encoded,
    );
  }

  /** Publishes the result the ledger already holds (`stored`, its JSON) and acks. */
  private async republish(
    entryId: string,
    fields: string[],
    command: Command,
    expireAt: number,
    stored: string,
  ): Promise<void> {
    const encoded = JSON.parse(stored) as string[];
    if (!this.oneScript) return this.conclude(entryId, fields, command, expireAt, encoded);
    // The ledger is terminal with this very copy, so the script's finish is a no-op and it goes
    // straight to publishing (one round trip instead of two or three).
    await this.settle(
      entryId,
      fields,
      command,
      expireAt,
      decodeResult(encoded).status,
      stored,
      encoded,
      false,
    );
  }

  /**
   * Standalone: concludeCommand-6.lua fixes, dead-letters, publishes and acks in one call. If the
   * ledger holds a different result (fixed first elsewhere), that one wins and is concluded with the
   * step-by-step path, which builds its dead letter from the original entry when it is `failed`.
   */
  private async settle(
    entryId: string,
    fields: string[],
    command: Command,
    expireAt: number,
    status: TerminalStatus,
    text: string,
    encoded: string[],
    countDuplicate: boolean,
    early?: StartedAtOnce,
  ): Promise<void> {
    const o = this.options;
    // The dead letter's fields are built (and sent) only for a failed result.
    const dead = status === 'failed' ? this.deadLetterFields(entryId, fields, decodeResult(encoded)) : [];
    const [fixed, concluded, stored, resultAdded, deadAdded] = await this.run.concludeCommand(
      this.keys.commandLedger(o.deviceId, command.id),
      this.keys.results(),
      this.keys.publishedMarker(this.keys.results(), o.deviceId, command.id),
      this.keys.deadLetters(),
      this.keys.publishedMarker(this.keys.deadLetters(), o.deviceId, command.id),
      this.stream,
      expireAt,
      status,
      text,
      resultField(encoded, RESULT_FIELD.attempts) ?? 0,
      this.markerTtl(expireAt),
      o.resultsMaxLen,
      o.group,
      entryId,
      dead.length,
      ...(early ? [early.receivedAt, early.startedAt, o.consumer] : ['', '', '']),
      ...dead,
      ...encoded,
    );
    if (fixed !== 1 && countDuplicate) this.deps.metrics.duplicates.inc();
    if (concluded !== 1) {
      await this.conclude(entryId, fields, command, expireAt, JSON.parse(stored) as string[]);
      return;
    }
    if (deadAdded === 1) this.deps.metrics.deadLetters.inc();
    if (resultAdded === 1) this.deps.metrics.results.inc({ status });
  }

  /** Markers must outlive every redelivery of the command: as long as its ledger. */
  private markerTtl(expireAt: number): number {
    return Math.max(1000, expireAt - this.clock.now());
  }

  /** The dead-letter entry's fields: one builder, shared with the gateway, so both write the same entry. */
  private deadLetterFields(entryId: string, fields: string[], result: CommandResult): (string | number)[] {
    return deadLetterFields({
      deviceId: this.options.deviceId,
      stream: this.stream,
      entryId,
      fields,
      result,
    });
  }

  /**
   * Publishes a fixed result (and dead letter) at most once each, then acknowledges the entry: the
   * step-by-step path, for a Cluster (and the rare cases above), each step in its own slot.
   */
  private async conclude(
    entryId: string,
    fields: string[],
    command: Command | undefined,
    expireAt: number,
    stored: string[],
  ): Promise<void> {
    const o = this.options;
    const key = command ? command.id : `e:${entryId}`;
    const ttl = this.markerTtl(expireAt);
    const result = decodeResult(stored);
    if (result.status === 'failed') {
      const [added] = await this.run.publishOnce(
        this.keys.deadLetters(),
        this.keys.publishedMarker(this.keys.deadLetters(), o.deviceId, key),
        ttl,
        0,
        ...this.deadLetterFields(entryId, fields, result),
      );
      if (added === 1) this.deps.metrics.deadLetters.inc();
    }
    const [added] = await this.run.publishOnce(
      this.keys.results(),
      this.keys.publishedMarker(this.keys.results(), o.deviceId, key),
      ttl,
      o.resultsMaxLen,
      ...stored,
    );
    if (added === 1) this.deps.metrics.results.inc({ status: result.status });
    // Acknowledge only now: the result is in the ledger and in the results stream.
    await this.reader.ack(entryId);
  }

  private async rejectMalformed(entryId: string, fields: string[], err: ValidationError): Promise<void> {
    const o = this.options;
    const salvage = salvageCommand(fields);
    const now = this.clock.now();
    const expireAt = now + o.ledgerRetentionMs;
    const result: CommandResult = {
      commandId: salvage.id ?? '',
      deviceId: o.deviceId,
      status: 'rejected',
      name: salvage.name,
      correlationId: salvage.correlationId,
      entryId,
      finishedAt: now,
      attempts: 0,
      errorClass: 'ValidationError',
      message: `malformed command entry: ${err.message}`,
      version: COMMAND_VERSION,
    };
    this.deps.logger.warn(
      { entryId, field: err.field, reason: err.reason },
      'rejected a malformed command entry',
    );
    // Malformed input also goes to the rejected stream with its reason (docs/guarantees.md §5).
    await this.run.publishOnce(
      this.keys.rejected(),
      this.keys.publishedMarker(this.keys.rejected(), o.deviceId, `e:${entryId}`),
      o.ledgerRetentionMs,
      o.resultsMaxLen,
      'src',
      this.stream,
      'e',
      entryId,
      'reason',
      err.message,
      'f',
      JSON.stringify(fields),
    );
    const pseudo = salvage.id
      ? ({ id: salvage.id } as Command) // ledger under its id, so a sender waiting on it sees `rejected`
      : undefined;
    await this.finish(entryId, fields, pseudo, expireAt, result);
  }
}
