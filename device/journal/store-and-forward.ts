/**
 * Store-and-forward: where each telemetry entry goes, live or to disk.
 *
 * - beside-live (default): while Redis is connected, entries go to the live
 *   producer; while it is not, or when the producer's buffer is full, they go
 *   to the journal. Batches that fail or time out are handed over by the
 *   producer's onFailed hook and journaled too. The replayer drains the
 *   journal beside live data, at `journal.replayRate`.
 * - ordered: once the journal holds a backlog and the live producer has
 *   settled everything it held, every new entry is appended to the journal
 *   behind the backlog, and the replayer sends the journal in order. When the
 *   journal is empty again, entries go live again.
 *
 * Nothing is lost silently: what the full journal cannot keep is counted in
 * agent_samples_dropped_total{reason="journal_full"} and logged once per episode;
 * entries cut off with a corrupt journal record in {reason="journal_corrupt"};
 * both are reported on /healthz (`journal-dropped`).
 */
import type { Clock } from '#shared/clock.js';
import type { EncodedEnvelope } from '#shared/envelope.js';
import { RedisUnavailableError } from '#shared/errors.js';
import type { HealthBook } from '#shared/health.js';
import type { Keys } from '#shared/keys.js';
import { EpisodeLog, type Logger } from '#shared/log.js';
import { Counter, Gauge, type Registry } from '#shared/metrics.js';
import type { RedisClient } from '#shared/redis/connect.js';
import { TelemetryProducer } from '#shared/telemetry/producer.js';
import type { ProducerOptions } from '#shared/telemetry/producer-options.js';
import { Journal } from './journal.js';
import type { JournalOptions, ReplayOptions } from './options.js';
import { Replayer } from './replayer.js';

export interface StoreAndForwardDeps {
  logger: Logger;
  clock: Clock;
  registry: Registry;
  /** The agent's drop counter; journal drops are counted with reason "journal_full". */
  dropped: Counter<'reason'>;
  /** The agent's health: journal losses are reported there. */
  health?: HealthBook;
}

/** "1-5,7,9-10": compact form of a list of sequence numbers, for the acknowledgement debug log. */
export function seqRanges(seqs: readonly number[]): string {
  const sorted = [...seqs].sort((a, b) => a - b);
  const parts: string[] = [];
  let i = 0;
  while (i < sorted.length) {
    const a = sorted[i]!;
    let b = a;
    while (i + 1 < sorted.length && sorted[i + 1] === b + 1) b = sorted[++i]!;
    parts.push(a === b ? String(a) : `${a}-${b}`);
    i++;
  }
  return parts.join(',');
}

/**
 * Entries the replayer hands its producer at once: several in-flight windows,
 * so the pipeline stays full and the wait for a chunk's last acknowledgement
 * is paid rarely; within the producer's buffer limit (memory bound).
 */
export function replayChunk(o: ProducerOptions): number {
  return Math.min(o.maxBufferedEntries, o.batchMaxEntries * o.maxInFlightBatches * 8);
}

export class StoreAndForward {
  readonly journal: Journal;
  readonly replayer: Replayer;
  private readonly replayProducer: TelemetryProducer;
  private diverting = false;
  private readonly fullLog: EpisodeLog;
  private readonly journalingLog: EpisodeLog;
  private readonly written: Counter;
  private readonly logger: Logger;

  constructor(
    private readonly client: RedisClient,
    keys: Keys,
    private readonly live: TelemetryProducer,
    producerOpts: ProducerOptions,
    private readonly options: { journal: JournalOptions; replay: ReplayOptions },
    deps: StoreAndForwardDeps,
  ) {
    const { registry, clock } = deps;
    this.logger = deps.logger;
    const registers = [registry];
    this.fullLog = new EpisodeLog(
      deps.logger,
      `journal full (${options.journal.maxBytes} bytes): ${options.journal.fullPolicy === 'drop-oldest' ? 'dropping oldest unsent entries' : 'refusing new entries'}`,
    );
    this.journalingLog = new EpisodeLog(
      deps.logger,
      'telemetry journaled to disk (Redis unreachable or slow)',
    );
    this.written = new Counter({
      name: 'journal_written_total',
      help: 'Entries appended to the disk journal',
      registers,
    });
    const replayed = new Counter({
      name: 'journal_replayed_total',
      help: 'Journal entries replayed and acknowledged by Redis',
      registers,
    });
    const torn = new Counter({
      name: 'journal_torn_records_total',
      help: 'Journal records cut off as torn or corrupt (the bad record and the whole records after it in its segment)',
      registers,
    });
    const lost = deps.health?.loss(
      'journal-dropped',
      'journal entries lost: the journal was full (journal.maxBytes, journal.fullPolicy) or a record was corrupt (see agent_samples_dropped_total)',
    );
    this.journal = Journal.open(options.journal, {
      logger: deps.logger,
      clock,
      events: {
        onDropped: (n) => {
          deps.dropped.inc({ reason: 'journal_full' }, n);
          lost?.hit(n);
          this.fullLog.hit({ policy: options.journal.fullPolicy }, n);
        },
        onTorn: (records, unsent) => {
          torn.inc(records);
          // Lost, not only skipped: they never reach Redis, so they count as dropped too.
          if (unsent > 0) {
            deps.dropped.inc({ reason: 'journal_corrupt' }, unsent);
            lost?.hit(unsent);
          }
        },
      },
    });
    const journal = this.journal;
    new Gauge({
      name: 'journal_bytes',
      help: 'Bytes of the disk journal (segments and write buffer)',
      registers,
      collect() {
        this.set(journal.bytes);
      },
    });
    new Gauge({
      name: 'journal_unsent_entries',
      help: 'Journal entries not yet acknowledged by Redis',
      registers,
      collect() {
        this.set(journal.unsent);
      },
    });
    new Gauge({
      name: 'journal_oldest_unsent_age_seconds',
      help: 'Age (by device time) of the oldest journal entry not yet acknowledged; 0 when none',
      registers,
      collect() {
        const t = journal.oldestUnsentTime();
        this.set(t === undefined ? 0 : Math.max(0, clock.now() - t) / 1000);
      },
    });

    const chunkMax = replayChunk(producerOpts);
    let replayer: Replayer | undefined;
    this.replayProducer = new TelemetryProducer(client, keys, producerOpts, {
      logger: deps.logger,
      clock,
      health: deps.health,
      hooks: {
        onAcked: (entries) => this.onAcked(entries, 'replay'),
        onFailed: (entries) => {
          replayer?.batchFailed(entries);
          return true;
        },
      },
    });
    replayer = new Replayer(this.journal, options.replay, {
      logger: deps.logger,
      clock,
      producer: this.replayProducer,
      chunkMax,
      connected: () => client.status === 'ready',
      mayReplay: () => options.replay.mode !== 'ordered' || this.updateDivert(),
      onReplayed: (n) => {
        replayed.inc(n);
        if (this.fullLog.isActive && this.journal.bytes < options.journal.maxBytes / 2)
          this.fullLog.end({ unsent: this.journal.unsent });
        if (this.journal.unsent === 0) this.journalingLog.end();
      },
    });
    this.replayer = replayer;
    new Gauge({
      name: 'journal_replay_active',
      help: '1 while a journal backlog is being replayed',
      registers,
      collect() {
        this.set(replayer.isReplaying ? 1 : 0);
      },
    });
    if (this.journal.unsent > 0)
      this.logger.info(
        { unsent: this.journal.unsent, bytes: this.journal.bytes, segments: this.journal.segmentCount },
        'journal holds a backlog from before the restart; it is replayed once Redis is reachable',
      );
  }

  /** Takes an entry: live, or into the journal. Always true (a drop is counted by the journal). */
  offer(entry: EncodedEnvelope): boolean {
    if (this.journal.isClosed) return this.live.offer(entry);
    if (this.options.replay.mode === 'ordered') {
      if (this.updateDivert()) return this.toJournal([entry]);
    } else if (this.client.status !== 'ready') {
      return this.toJournal([entry]);
    }
    return this.live.offer(entry) || this.toJournal([entry]);
  }

  /**
   * Hook of the live producer: a failed batch goes to the journal instead of a
   * retry in memory. Unless it failed before it was sent (RedisUnavailableError),
   * Redis may have executed it with the reply lost: the journal marks it
   * uncertain, so a full budget holds it for a resend instead of counting it as dropped.
   */
  onFailed(entries: readonly EncodedEnvelope[], error?: Error): boolean {
    if (this.journal.isClosed) return false;
    this.toJournal(entries, !(error instanceof RedisUnavailableError));
    return true;
  }

  /** Hook of both producers: a batch is in Redis (debug log of its sequence numbers). */
  onAcked(entries: readonly EncodedEnvelope[], source: 'live' | 'replay'): void {
    if (this.logger.isLevelEnabled('debug'))
      this.logger.debug({ source, acked: seqRanges(entries.map((e) => e.seq)) }, 'telemetry acknowledged');
  }

  start(): void {
    this.replayer.start();
  }

  /**
   * Stops replaying, journals what the live producer still held (`left`: never
   * sent; `inFlight`: sent with the outcome unknown, journaled as uncertain),
   * writes and closes the journal.
   */
  async stop(
    left: readonly EncodedEnvelope[],
    inFlight: readonly EncodedEnvelope[],
    maxWaitMs: number,
  ): Promise<{ unsent: number }> {
    await this.replayer.stop(maxWaitMs);
    await this.replayProducer.close(0);
    // Held entries whose resend had not settled stay in the journal (written to disk on close).
    const unsettled = this.replayer.takeUnsettled();
    if (unsettled.length > 0) this.journal.hold(unsettled);
    if (inFlight.length > 0) this.toJournal(inFlight, true);
    if (left.length > 0) this.toJournal(left);
    const unsent = this.journal.unsent;
    this.journal.close();
    this.fullLog.end();
    this.journalingLog.end();
    if (unsent > 0)
      this.logger.info({ unsent }, 'journal closed with a backlog; it is replayed after the next start');
    return { unsent };
  }

  /**
   * ordered mode: divert to the journal while it holds a backlog, starting only
   * once the live producer holds nothing (its failed batches are then all in
   * the journal, in order); back to live once the journal is empty.
   */
  private updateDivert(): boolean {
    if (this.diverting) {
      if (this.journal.unsent === 0) this.diverting = false;
    } else if (this.journal.unsent > 0 && this.live.held === 0) {
      this.diverting = true;
    }
    return this.diverting;
  }

  private toJournal(entries: readonly EncodedEnvelope[], uncertain = false): true {
    const taken = this.journal.append(entries, { uncertain });
    if (taken > 0) {
      this.written.inc(taken);
      this.journalingLog.hit({ unsent: this.journal.unsent }, taken);
    }
    return true;
  }
}
