/**
 * The agent's command worker: reads the device's command stream through a
 * consumer group (stable consumer name, blocking XREADGROUP) and executes the
 * commands one at a time, in stream order.
 *
 * Per command (see docs/commands.md for why each step is where it is); the
 * decisions are the pure steps of steps.ts, this file does the I/O between them:
 *   1. receive (steps.receive): a malformed entry ends `rejected` with the reason;
 *   2. check the journal (steps.checkJournal): it already took effect -> report that result;
 *   3. begin: beginCommand-1.lua (the Redis ledger, atomic), then steps.checkLedger:
 *      already terminal -> republish and ack; past the deadline -> never run:
 *      `expired` if no attempt started, else `unknown` (it may have taken effect);
 *      an earlier attempt left running -> rerun only if the handler is idempotent
 *      or the journal shows that attempt failed before its effect, else `unknown`;
 *   4. run: journal `start` (fsync), the handler with its timeout, journal `done`;
 *      transient errors retry (steps.afterAttempt) with exponential backoff and
 *      jitter, and after commands.maxAttempts the command ends `failed`;
 *   5. conclude (shared/commands/conclude.ts, as the gateway does): the one
 *      terminal result is fixed in the ledger (first one wins), published at most
 *      once (and, when failed, dead-lettered once), and only then acked.
 * Reading is shared/streams/group-reader.ts: own pending entries first, then new.
 * Pending entries of a consumer that died are claimed with XAUTOCLAIM after
 * commands.claimIdle, which must exceed every handler's timeout plus
 * commands.retryMaxDelay. After any Redis error the worker re-reads its own
 * pending entries from 0, so the rest of an interrupted batch keeps its order.
 */
import type { Clock } from '#shared/clock.js';
import { systemClock } from '#shared/clock.js';
import {
  COMMAND_VERSION,
  type Command,
  rejectedCommandFields,
  resultFields,
  type salvageCommand,
} from '#shared/commands/codec.js';
import {
  type CommandEntry,
  Concluder,
  type Conclusion,
  type StartedAtOnce,
} from '#shared/commands/conclude.js';
import { encodeStoredResult } from '#shared/commands/ledger.js';
import { type BeginMode, type Begun, beginCommand, publishOnce } from '#shared/commands/scripts.js';
import { duplicateClient, registerDevice } from '#shared/commands/send.js';
import { ConfigError, type ValidationError } from '#shared/errors.js';
import type { Keys } from '#shared/keys.js';
import { EpisodeLog, type Logger } from '#shared/log.js';
import { type RedisClient, reconnectDelay } from '#shared/redis/connect.js';
import { GroupReader, type StreamEntry } from '#shared/streams/group-reader.js';
import { type AttemptDeps, runAttempt } from './attempt.js';
import type { HandlerRegistry } from './handlers.js';
import type { CommandJournal } from './journal.js';
import type { CommandMetrics } from './metrics.js';
import {
  afterAttempt,
  backoff,
  checkJournal,
  checkLedger,
  deadlinePassedWhileRetrying,
  type Ending,
  malformedResult,
  receive,
  startsAtOnce,
} from './steps.js';
import type { WorkerOptions } from './worker-options.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class CommandWorker {
  private readonly connection: RedisClient;
  private readonly reader: GroupReader;
  private readonly stream: string;
  /** How a command ends: one script call on a standalone server, step by step on a Cluster. */
  private readonly concluder: Concluder;
  private running = false;
  private loop: Promise<void> | undefined;
  private nextClaimAt = 0;
  private readonly clock: Clock;
  private readonly redisDown: EpisodeLog;
  private readonly attemptDeps: AttemptDeps;
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
    this.concluder = new Concluder({
      client,
      keys,
      clock: this.clock,
      group: options.group,
      resultsMaxLen: options.resultsMaxLen,
      durability: options.durability,
    });
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
    this.attemptDeps = {
      deviceId: options.deviceId,
      journal,
      ledgerRetentionMs: options.ledgerRetentionMs,
      logger: deps.logger,
    };
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
        const received = fields ? receive(fields) : undefined;
        if (received?.kind !== 'command') return;
        const c = received.command;
        await beginCommand(this.client, {
          ledger: this.keys.commandLedger(this.options.deviceId, c.id),
          now,
          deadline: c.deadline,
          expireAt: c.deadline + this.options.ledgerRetentionMs,
          consumer: this.options.consumer,
          mode: 'deliver',
        });
      }),
    );
  }

  /** One command, step by step (steps.ts decides; this reads, runs and records between the steps). */
  private async handle(entryId: string, fields: string[], freshAt?: number): Promise<void> {
    const received = receive(fields);
    if (received.kind === 'malformed') {
      await this.rejectMalformed(entryId, fields, received.error, received.salvage);
      return;
    }
    const { command } = received;
    const o = this.options;
    const expireAt = command.deadline + o.ledgerRetentionMs;
    const entry: CommandEntry = {
      deviceId: o.deviceId,
      entryId,
      fields,
      commandId: command.id,
      expireAt,
      ack: true,
    };
    const handler = this.handlers.get(command.name);
    const journaled = this.journal.get(command.id);

    const recorded = checkJournal(journaled);
    if (recorded) {
      // Killed after the handler, before the ledger was told: fix the result there first (else it
      // stays `running` for ledgerRetention, and a sender or another consumer reads it wrong).
      await this.end(entry, recorded, { duplicate: true });
      return;
    }

    const ledger = this.keys.commandLedger(o.deviceId, command.id);
    const begin = (mode: BeginMode) =>
      beginCommand(this.client, {
        ledger,
        now: this.clock.now(),
        deadline: command.deadline,
        expireAt,
        consumer: o.consumer,
        mode,
      });
    // A read-only command read for the first time starts at once: it has no effect to take twice,
    // and its receipt and start are recorded with its result (docs/commands.md, "Read-only").
    // Without a handler, only record the delivery: it will be rejected, with no attempt counted.
    let atOnce = startsAtOnce({
      handler,
      fresh: freshAt !== undefined,
      journaled: journaled !== undefined,
      oneCall: this.concluder.oneCall,
      deadline: command.deadline,
      now: this.clock.now(),
      clockSkewAllowanceMs: o.clockSkewAllowanceMs,
    });
    if (atOnce) this.deps.metrics.startedAtOnce.inc();
    let begun: Begun = atOnce
      ? { code: 'started', attempts: 1, deliveredAt: freshAt, stored: undefined }
      : await begin(handler ? 'start' : 'deliver');
    const result = (ending: Ending, startedAt?: number): string[] =>
      resultFields({
        commandId: command.id,
        deviceId: o.deviceId,
        name: command.name,
        correlationId: command.correlationId,
        entryId,
        issuedAt: command.issuedAt,
        deliveredAt: begun.deliveredAt,
        startedAt,
        finishedAt: this.clock.now(),
        version: COMMAND_VERSION,
        ...ending,
        attempts: ending.attempts ?? begun.attempts,
      });

    const check = () =>
      checkLedger(begun, journaled, handler, {
        deadline: command.deadline,
        handlerNames: this.handlers.names,
        name: command.name,
      });
    let decision = check();
    if (decision.kind === 'restart') {
      begun = await begin('restart');
      decision = check();
    }
    if (decision.kind === 'republish') {
      this.deps.metrics.duplicates.inc();
      await this.republish(entry, decision.stored);
      return;
    }
    if (decision.kind === 'end') {
      await this.end(entry, result(decision.ending));
      return;
    }
    if (!handler) return; // checkLedger ends a command without a handler; this only narrows the type

    for (;;) {
      const startedAt = this.clock.now();
      this.deps.metrics.attempts.inc();
      // A read-only command that runs longer than a moment is recorded as running, as any other is.
      const recordRunning = atOnce ? () => void begin('start').catch(() => undefined) : undefined;
      const outcome = await runAttempt(handler, command, begun.attempts, this.attemptDeps, recordRunning);
      if (outcome.kind !== 'transient') {
        const next = afterAttempt(outcome, this.attemptLimits(begun.attempts, command));
        if (next.kind !== 'end') throw new TypeError('only a transient failure is retried');
        const encoded = result(next.ending, startedAt);
        if (!handler.idempotent)
          this.journal.append({
            i: command.id,
            p: 'done',
            a: begun.attempts,
            x: expireAt,
            r: encodeStoredResult(encoded),
          });
        if (o.delayAfterHandlerMs > 0) await sleep(o.delayAfterHandlerMs);
        const early = atOnce
          ? { receivedAt: begun.deliveredAt ?? startedAt, startedAt, consumer: o.consumer }
          : undefined;
        await this.end(entry, encoded, { early });
        return;
      }
      if (atOnce) {
        // It threw: before any retry the ledger records this attempt, as beginCommand would have.
        atOnce = false;
        begun = await begin('start');
        if (begun.code === 'done') {
          this.deps.metrics.duplicates.inc();
          await this.republish(entry, begun.stored ?? []);
          return;
        }
      }
      // Transient failure: it did not take effect (the handler threw), so it may be retried.
      if (!handler.idempotent)
        this.journal.append({ i: command.id, p: 'failed', a: begun.attempts, x: expireAt });
      const next = afterAttempt(outcome, this.attemptLimits(begun.attempts, command));
      if (next.kind === 'end') {
        await this.end(entry, result(next.ending, startedAt));
        return;
      }
      await sleep(next.delayMs);
      // Keep the entry ours while we retry: XCLAIM by its owner resets its idle time.
      await this.reader.hold(entryId);
      begun = await begin('restart');
      if (begun.code === 'done') {
        await this.republish(entry, begun.stored ?? []);
        return;
      }
      if (begun.code === 'expired' || begun.code === 'lapsed') {
        await this.end(entry, result(deadlinePassedWhileRetrying(outcome.error)));
        return;
      }
    }
  }

  private attemptLimits(attempts: number, command: Command) {
    const o = this.options;
    return {
      attempts,
      maxAttempts: o.maxAttempts,
      now: this.clock.now(),
      deadline: command.deadline,
      delayMs: backoff(attempts, o.retryBaseDelayMs, o.retryMaxDelayMs),
    };
  }

  /** Ends the command with `encoded` (conclude.ts: ledger first-wins, publish once, then ack) and counts it. */
  private async end(
    entry: CommandEntry,
    encoded: string[],
    how: {
      /** A redelivery of a command that had already ended: a duplicate whoever fixes the ledger. */
      duplicate?: boolean;
      early?: StartedAtOnce;
    } = {},
  ): Promise<void> {
    if (how.duplicate) this.deps.metrics.duplicates.inc();
    const c = await this.concluder.conclude(entry, encoded, how.early);
    if (!c.fixed && !how.duplicate) this.deps.metrics.duplicates.inc();
    this.count(c);
  }

  /** Publishes the result the ledger already holds and acks. */
  private async republish(entry: CommandEntry, stored: string[]): Promise<void> {
    this.count(await this.concluder.republish(entry, stored));
  }

  private count(c: Conclusion): void {
    if (c.deadLetterAdded) this.deps.metrics.deadLetters.inc();
    if (c.resultAdded) this.deps.metrics.results.inc({ status: c.status });
  }

  private async rejectMalformed(
    entryId: string,
    fields: string[],
    err: ValidationError,
    salvage: ReturnType<typeof salvageCommand>,
  ): Promise<void> {
    const o = this.options;
    const now = this.clock.now();
    const result = malformedResult(err, salvage, {
      deviceId: o.deviceId,
      entryId,
      now,
      version: COMMAND_VERSION,
    });
    this.deps.logger.warn(
      { entryId, field: err.field, reason: err.reason },
      'rejected a malformed command entry',
    );
    // Malformed input also goes to the rejected stream with its reason (docs/guarantees.md §5).
    await publishOnce(this.client, {
      stream: this.keys.rejected(),
      marker: this.keys.publishedMarker(this.keys.rejected(), o.deviceId, `e:${entryId}`),
      ttlMs: o.ledgerRetentionMs,
      maxLen: o.resultsMaxLen,
      fields: rejectedCommandFields({ stream: this.stream, entryId, reason: err.message, fields }),
    });
    // Ledgered under its id when it has one, so a sender waiting on it sees `rejected`.
    await this.end(
      {
        deviceId: o.deviceId,
        entryId,
        fields,
        commandId: salvage.id,
        expireAt: now + o.ledgerRetentionMs,
        ack: true,
      },
      resultFields(result),
    );
  }
}
