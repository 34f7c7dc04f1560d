/**
 * The batched telemetry producer used by agents and gateways.
 *
 * Entries are collected into batches by count, bytes and linger time and sent
 * as one scripted call (the idempotent-append script by default) holding every
 * partition of the batch on a standalone server, and as one call per partition
 * on a Cluster (a script's keys must share a slot). At most `maxInFlightBatches` batches are unacknowledged at
 * once, and at most `maxBufferedEntries` entries are held in memory in all:
 * past that `offer` returns false (back-pressure) and the caller decides what
 * happens to the entry (the agent journals it to disk, the gateway stops
 * reading from device sockets).
 *
 * A failed or timed-out batch is offered to `onFailed` (a journal may take it)
 * or retried with capped, jittered backoff. While a retry is pending no newer
 * batch is sent, so per-device order holds; idempotent appends make the retry
 * of a batch whose reply was lost harmless.
 */
import { type ChainableCommander, Cluster } from 'ioredis';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import { type EncodedEnvelope, encodedSize } from '../envelope.js';
import { AppendTimeoutError, RedisUnavailableError, ScriptError } from '../errors.js';
import type { HealthBook, LossCondition } from '../health.js';
import type { Keys } from '../keys.js';
import { EpisodeLog, type Logger } from '../log.js';
import { Counter, Gauge, Histogram, type Registry } from '../metrics.js';
import { type RedisClient, reconnectDelay, refreshOnRedirection } from '../redis/connect.js';
import { checkWait, pipelineWait, type ReplicaWait, replicaWaitOf } from '../redis/durability.js';
import { defineScripts, scriptErrorOf } from '../redis/scripts.js';
import type { ProducerOptions } from './producer-options.js';

export interface BatchOutcome {
  appended: number;
  duplicates: number;
  /** Sequence numbers given up by the gap bound (see appendTelemetry-n.lua). */
  forgotten: number;
}

export interface ProducerHooks {
  /** A batch is in Redis at the configured durability level. */
  onAcked?(entries: readonly EncodedEnvelope[], outcome: BatchOutcome): void;
  /**
   * A batch failed. Return true when the caller took the entries (for example
   * into a disk journal); otherwise the producer keeps them and retries.
   */
  onFailed?(entries: readonly EncodedEnvelope[], error: Error): boolean;
}

export interface ProducerMetrics {
  appended: Counter;
  duplicates: Counter;
  forgotten: Counter;
  failedBatches: Counter;
  refused: Counter;
  held: Gauge;
  batchSeconds: Histogram;
}

export function createProducerMetrics(registry: Registry): ProducerMetrics {
  const registers = [registry];
  return {
    appended: new Counter({ name: 'telemetry_appended_total', help: 'Entries appended to Redis', registers }),
    duplicates: new Counter({
      name: 'telemetry_duplicates_refused_total',
      help: 'Entries refused as already appended (idempotent retries, replays)',
      registers,
    }),
    forgotten: new Counter({
      name: 'telemetry_sequence_forgotten_total',
      help: 'Sequence numbers given up by the per-device gap bound',
      registers,
    }),
    failedBatches: new Counter({
      name: 'telemetry_batches_failed_total',
      help: 'Batches that failed or timed out',
      registers,
    }),
    refused: new Counter({
      name: 'telemetry_backpressure_refused_total',
      help: 'Entries the producer refused because its buffer was full',
      registers,
    }),
    held: new Gauge({
      name: 'telemetry_producer_held_entries',
      help: 'Entries held in memory (queued + in flight)',
      registers,
    }),
    batchSeconds: new Histogram({
      name: 'telemetry_batch_seconds',
      help: 'Time from sending a batch to its acknowledgement',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers,
    }),
  };
}

interface Batch {
  readonly id: number;
  readonly entries: EncodedEnvelope[];
}

type ScriptPipeline = ChainableCommander & {
  appendTelemetry(numberOfKeys: number, ...keysAndArgs: (string | number)[]): ChainableCommander;
  appendTelemetryRaw(numberOfKeys: number, ...keysAndArgs: (string | number)[]): ChainableCommander;
};

/**
 * The batch argument of the append scripts: JSON rows of strings (see appendTelemetry-n.lua).
 * One JSON.stringify of the rows: it makes one flat string, which the socket write copies
 * as it is (text built by concatenation is cheaper to build here and dearer to write: with
 * the write counted, 1.0-1.2 vs 1.4 us per entry).
 */
export function encodeBatch(group: readonly EncodedEnvelope[]): string {
  const rows = new Array<string[]>(group.length);
  for (let i = 0; i < group.length; i++) {
    const e = group[i]!;
    rows[i] = [e.deviceId, String(e.seq), String(e.time), e.type, String(e.version), e.payload];
  }
  return JSON.stringify(rows);
}

export interface ProducerDeps {
  logger: Logger;
  metrics?: ProducerMetrics;
  clock?: Clock;
  hooks?: ProducerHooks;
  /** The process's health: sequence numbers given up by the gap bound are reported there. */
  health?: HealthBook;
}

export class TelemetryProducer {
  private queue: EncodedEnvelope[] = [];
  private head = 0;
  private queuedBytes = 0;
  private inFlightBatches = 0;
  private inFlightEntries = 0;
  /** Batches sent and not yet settled, by id (see abandonInFlight). */
  private readonly inFlight = new Map<number, Batch>();
  private retryBatches: Batch[] = [];
  private retryEntries = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDue = false;
  private consecutiveFailures = 0;
  private lingerTimer: NodeJS.Timeout | undefined;
  private sendPartial = false;
  private nextBatchId = 1;
  private idleWaiters: Array<() => void> = [];
  private roomWaiters: Array<() => void> = [];
  private closed = false;
  private pumping = false;
  private notReadySince: number | undefined;
  private readyWaiter: NodeJS.Timeout | undefined;
  private readonly clock: Clock;
  private readonly backpressure: EpisodeLog;
  private readonly outage: EpisodeLog;
  private scriptFailureLogged = false;
  private readonly forgotten: LossCondition | undefined;
  /** producer.durability as WAIT's arguments (undefined at `local`), worked out once. */
  private readonly replicaWait: ReplicaWait | undefined;
  readonly totals: BatchOutcome & { refused: number; failedBatches: number } = {
    appended: 0,
    duplicates: 0,
    forgotten: 0,
    refused: 0,
    failedBatches: 0,
  };

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly options: ProducerOptions,
    private readonly deps: ProducerDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.replicaWait = replicaWaitOf(options);
    this.backpressure = new EpisodeLog(deps.logger, 'producer back-pressure (buffer full)');
    this.outage = new EpisodeLog(deps.logger, 'telemetry appends failing');
    this.forgotten = deps.health?.loss(
      'sequence-forgotten',
      'sequence numbers given up by the per-device gap bound (producer.maxGaps): entries that come with them later are refused as duplicates (see telemetry_sequence_forgotten_total)',
    );
    defineScripts(client);
  }

  /** Entries held in memory: queued, in flight and awaiting retry. */
  get held(): number {
    return this.queue.length - this.head + this.inFlightEntries + this.retryEntries;
  }

  /** True while the producer refuses entries because its buffer is full. */
  get isBackpressured(): boolean {
    return this.backpressure.isActive;
  }

  /**
   * Queues an entry. Returns false when the buffer is full: the entry was not
   * taken and the caller must divert or drop it (and count that).
   */
  offer(entry: EncodedEnvelope): boolean {
    if (this.closed) throw new TypeError('producer is closed');
    if (this.held >= this.options.maxBufferedEntries) {
      this.totals.refused++;
      this.deps.metrics?.refused.inc();
      this.backpressure.hit({ held: this.held, limit: this.options.maxBufferedEntries });
      return false;
    }
    this.queue.push(entry);
    this.queuedBytes += encodedSize(entry);
    this.updateHeld();
    this.pump();
    return true;
  }

  /**
   * Resolves when the producer has room again (held below maxBufferedEntries):
   * for callers that pause their source under back-pressure, such as a gateway
   * that stops reading device sockets.
   */
  whenRoom(): Promise<void> {
    if (this.held < this.options.maxBufferedEntries) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /**
   * Sends what is queued now instead of lingering: for a caller that knows no
   * more entries can come until these are acknowledged (every bridge
   * connection waits for its PUBACK), where lingering is pure latency.
   */
  sendNow(): void {
    if (this.closed || this.queued === 0) return;
    this.sendPartial = true;
    this.pump();
  }

  /** Sends everything held and resolves when it is acknowledged (or taken by onFailed). */
  flush(): Promise<void> {
    this.sendPartial = true;
    this.pump();
    if (this.held === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Flushes for at most `timeoutMs`, then stops. Returns the entries still
   * queued or awaiting a retry (not sent), so a caller with a journal can keep
   * them. Batches still in flight settle later as usual (their hooks are
   * called: a gateway still acknowledges what lands); a caller that would
   * rather keep them itself takes them with `abandonInFlight`.
   */
  async close(timeoutMs: number): Promise<EncodedEnvelope[]> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.flush(),
      new Promise<void>((r) => (timer = this.clock.setTimeout(r, timeoutMs))),
    ]);
    if (timer) this.clock.clearTimeout(timer);
    this.closed = true;
    if (this.lingerTimer) this.clock.clearTimeout(this.lingerTimer);
    if (this.retryTimer) this.clock.clearTimeout(this.retryTimer);
    if (this.readyWaiter) this.clock.clearTimeout(this.readyWaiter);
    const left = [...this.retryBatches.flatMap((b) => b.entries), ...this.queue.slice(this.head)];
    this.queue = [];
    this.head = 0;
    this.retryBatches = [];
    this.retryEntries = 0;
    return left;
  }

  /**
   * After `close`: hands out the entries of the batches still in flight (sent,
   * outcome unknown: Redis may have executed them), oldest first, and detaches
   * them: whatever becomes of those batches later no longer reaches the hooks.
   * For a caller that keeps them elsewhere (the agent journals them as
   * uncertain, so a restart sends them again and the idempotent append refuses
   * what had gone in), since after close a failed batch is never retried.
   */
  abandonInFlight(): EncodedEnvelope[] {
    if (!this.closed) throw new TypeError('abandonInFlight() is for a closed producer');
    const batches = [...this.inFlight.values()].sort((a, b) => a.id - b.id);
    for (const b of batches) this.settle(b);
    this.updateHeld();
    return batches.flatMap((b) => b.entries);
  }

  private get queued(): number {
    return this.queue.length - this.head;
  }

  private pump(): void {
    // Re-entered when a batch fails synchronously inside the loop below; the outer loop carries on.
    if (this.pumping) return;
    this.pumping = true;
    try {
      this.pumpLoop();
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Whether batches may be dispatched now. While the client is not connected,
   * batches wait (up to appendTimeout) for it instead of failing at once: a
   * connection still being set up is not an outage, and a batch that failed
   * while a later one succeeded would break per-device order. Once the wait is
   * over, batches fail fast (and the journal, if any, takes them).
   */
  private connectionUsable(): boolean {
    if (this.client.status === 'ready' && this.nodesReady()) {
      this.notReadySince = undefined;
      return true;
    }
    const now = this.clock.now();
    this.notReadySince ??= now;
    const waited = now - this.notReadySince;
    if (waited >= this.options.appendTimeoutMs) return true;
    if (!this.readyWaiter) {
      // Node connections of a cluster report no event of their own here: look again shortly.
      const recheck = this.client.status === 'ready' ? 10 : this.options.appendTimeoutMs - waited;
      const onReady = () => {
        if (this.readyWaiter) this.clock.clearTimeout(this.readyWaiter);
        this.readyWaiter = undefined;
        this.pump();
      };
      this.client.once('ready', onReady);
      this.readyWaiter = this.clock.setTimeout(
        () => {
          this.client.off('ready', onReady);
          this.readyWaiter = undefined;
          this.pump();
        },
        Math.min(recheck, this.options.appendTimeoutMs - waited),
      );
    }
    return false;
  }

  /**
   * A cluster client opens its node connections lazily. A batch sent while a
   * node connection is still in its handshake waits in that connection's
   * offline queue, and a batch sent just as it turns ready can be written
   * before that queue is flushed, overtaking the earlier one. So batches go
   * out only once every master's connection is ready (connecting idle ones).
   */
  private nodesReady(): boolean {
    if (!(this.client instanceof Cluster)) return true;
    let ready = true;
    for (const node of this.client.nodes('master')) {
      if (node.status === 'ready') continue;
      ready = false;
      if (node.status === 'wait') node.connect().catch(() => {});
    }
    return ready;
  }

  private pumpLoop(): void {
    const o = this.options;
    while (
      !this.closed &&
      this.retryBatches.length === 0 &&
      this.inFlightBatches < o.maxInFlightBatches &&
      this.queued > 0 &&
      this.connectionUsable()
    ) {
      const n = this.queued;
      if (n === 0) break;
      const full = n >= o.batchMaxEntries || this.queuedBytes >= o.batchMaxBytes;
      if (!full && !this.sendPartial) break;
      this.send(this.takeBatch());
    }
    if (this.queued === 0) {
      this.sendPartial = false;
      if (this.lingerTimer) {
        this.clock.clearTimeout(this.lingerTimer);
        this.lingerTimer = undefined;
      }
    } else if (!this.lingerTimer && !this.sendPartial && !this.closed) {
      this.lingerTimer = this.clock.setTimeout(() => {
        this.lingerTimer = undefined;
        this.sendPartial = true;
        this.pump();
      }, o.lingerMs);
    }
  }

  private takeBatch(): Batch {
    const o = this.options;
    const entries: EncodedEnvelope[] = [];
    let bytes = 0;
    while (this.head < this.queue.length && entries.length < o.batchMaxEntries) {
      const e = this.queue[this.head]!;
      const size = encodedSize(e);
      if (entries.length > 0 && bytes + size > o.batchMaxBytes) break;
      entries.push(e);
      bytes += size;
      this.head++;
    }
    this.queuedBytes -= bytes;
    // Compact now and then so the array does not grow without bound.
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return { id: this.nextBatchId++, entries };
  }

  private send(batch: Batch): void {
    this.inFlightBatches++;
    this.inFlightEntries += batch.entries.length;
    this.inFlight.set(batch.id, batch);
    if (this.client.status !== 'ready') {
      // Not connected for longer than appendTimeout (see connectionUsable): fail at once
      // rather than hand the batch to a client that would queue it behind later ones.
      this.failed(
        batch,
        new RedisUnavailableError('the producer connection', `client is ${this.client.status}`),
      );
      return;
    }
    const started = performance.now();
    this.appendBatch(batch.entries).then(
      (outcome) => {
        // Abandoned on close (abandonInFlight): the caller kept its entries; nothing more to do.
        if (!this.settle(batch)) return;
        this.deps.metrics?.batchSeconds.observe((performance.now() - started) / 1000);
        this.consecutiveFailures = 0;
        this.outage.end();
        this.scriptFailureLogged = false;
        this.record(outcome);
        this.deps.hooks?.onAcked?.(batch.entries, outcome);
        this.afterSettle();
      },
      (err: Error) => this.failed(batch, err),
    );
  }

  private failed(batch: Batch, err: Error): void {
    if (!this.settle(batch)) return;
    this.totals.failedBatches++;
    this.deps.metrics?.failedBatches.inc();
    this.outage.hit({ error: err.message });
    // A script the server refuses is a deployment bug, not an outage: say so once, loudly.
    // The batch is still kept and retried (a server upgrade or failover may cure it).
    if (err instanceof ScriptError && !this.scriptFailureLogged) {
      this.scriptFailureLogged = true;
      this.deps.logger.error({ err, script: err.script }, err.message);
    }
    const taken = this.deps.hooks?.onFailed?.(batch.entries, err) ?? false;
    if (!taken && !this.closed) this.scheduleRetry(batch);
    this.afterSettle();
  }

  /** Takes a batch out of the in-flight window; false if it was abandoned before. */
  private settle(batch: Batch): boolean {
    if (!this.inFlight.delete(batch.id)) return false;
    this.inFlightBatches--;
    this.inFlightEntries -= batch.entries.length;
    return true;
  }

  private record(outcome: BatchOutcome): void {
    this.totals.appended += outcome.appended;
    this.totals.duplicates += outcome.duplicates;
    this.totals.forgotten += outcome.forgotten;
    if (outcome.forgotten) this.forgotten?.hit(outcome.forgotten);
    const m = this.deps.metrics;
    if (m) {
      m.appended.inc(outcome.appended);
      if (outcome.duplicates) m.duplicates.inc(outcome.duplicates);
      if (outcome.forgotten) m.forgotten.inc(outcome.forgotten);
    }
  }

  private scheduleRetry(batch: Batch): void {
    this.retryBatches.push(batch);
    this.retryEntries += batch.entries.length;
    if (this.retryTimer) return;
    const delay = reconnectDelay(this.consecutiveFailures++, this.options.retryMaxDelayMs);
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.retryDue = true;
      this.afterSettle();
    }, delay);
  }

  /** Once every in-flight batch has settled, failed batches go back to the front, oldest first. */
  private requeueRetries(): void {
    const batches = this.retryBatches.sort((a, b) => a.id - b.id);
    const entries = batches.flatMap((b) => b.entries);
    this.queue = [...entries, ...this.queue.slice(this.head)];
    this.head = 0;
    this.queuedBytes += entries.reduce((sum, e) => sum + encodedSize(e), 0);
    this.retryBatches = [];
    this.retryEntries = 0;
    this.retryDue = false;
    this.sendPartial = true;
  }

  private afterSettle(): void {
    if (this.retryDue && this.inFlightBatches === 0) this.requeueRetries();
    this.pump();
    this.updateHeld();
    if (this.held < this.options.maxBufferedEntries / 2) this.backpressure.end({ held: this.held });
    if (this.roomWaiters.length > 0 && this.held < this.options.maxBufferedEntries) {
      const waiters = this.roomWaiters;
      this.roomWaiters = [];
      for (const w of waiters) w();
    }
    if (this.held === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private updateHeld(): void {
    this.deps.metrics?.held.set(this.held);
  }

  /**
   * Appends one batch. A standalone server takes it in one script call, every
   * partition of it inside (each script call costs Redis and the client a fixed
   * share, and a gateway's batch spans many partitions); a Cluster gets one
   * call per partition, since a script's keys must share a slot.
   */
  private async appendBatch(entries: readonly EncodedEnvelope[]): Promise<BatchOutcome> {
    const parts = [...this.keys.byPartition(entries, (e) => e.deviceId)];
    const outcomes = await this.withTimeout(
      Promise.all(
        this.client instanceof Cluster
          ? parts.map((part) => this.appendPartitions([part]))
          : [this.appendPartitions(parts)],
      ),
    );
    return outcomes.reduce(
      (sum, o) => ({
        appended: sum.appended + o.appended,
        duplicates: sum.duplicates + o.duplicates,
        forgotten: sum.forgotten + o.forgotten,
      }),
      { appended: 0, duplicates: 0, forgotten: 0 },
    );
  }

  /** One script call for these partitions' entries: their keys in order, one JSON batch each. */
  private async appendPartitions(
    parts: ReadonlyArray<readonly [number, readonly EncodedEnvelope[]]>,
  ): Promise<BatchOutcome> {
    const o = this.options;
    const keys: string[] = [];
    const batches: string[] = [];
    let entries = 0;
    for (const [partition, group] of parts) {
      keys.push(this.keys.telemetryStream(partition));
      if (o.idempotent) keys.push(this.keys.telemetrySeqState(partition));
      if (o.foldState) keys.push(this.keys.partitionState(partition));
      batches.push(encodeBatch(group));
      entries += group.length;
    }
    const pipeline = this.client.pipeline() as ScriptPipeline;
    if (o.idempotent) pipeline.appendTelemetry(keys.length, ...keys, o.maxGaps, ...batches);
    else pipeline.appendTelemetryRaw(keys.length, ...keys, o.maxGaps, ...batches);
    pipelineWait(pipeline, this.replicaWait);
    const replies = (await pipeline.exec()) ?? [];
    for (const [err] of replies) {
      if (!err) continue;
      refreshOnRedirection(this.client, err);
      throw scriptErrorOf(err, o.idempotent ? 'appendTelemetry' : 'appendTelemetryRaw') ?? err;
    }
    checkWait(replies, this.replicaWait);
    if (!o.idempotent) return { appended: entries, duplicates: 0, forgotten: 0 };
    const [appended, duplicates, forgotten] = (replies[0]?.[1] ?? [0, 0, 0]) as [number, number, number];
    return { appended, duplicates, forgotten };
  }

  private withTimeout<T>(promise: Promise<T>): Promise<T> {
    const ms = this.options.appendTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.clock.setTimeout(() => reject(new AppendTimeoutError(ms)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => {
      if (timer) this.clock.clearTimeout(timer);
    });
  }
}
