/**
 * Replays the journal's backlog to Redis at a bounded rate, beside live data.
 *
 * It uses its own producer (own in-flight window, same options and durability
 * level as the live one), so the backlog never takes live data's place in the
 * live window. Entries go out in journal order, a chunk at a time; a chunk is
 * committed (leaves the journal) only when every batch of it was acknowledged.
 * When any batch fails, the cursor is rewound to the committed offset and the
 * chunk is sent again after a backoff: the idempotent append refuses what had
 * already gone in, so the retry creates no duplicates.
 */
import type { Clock } from '#shared/clock.js';
import type { EncodedEnvelope } from '#shared/envelope.js';
import type { Logger } from '#shared/log.js';
import { reconnectDelay } from '#shared/redis/connect.js';
import type { TelemetryProducer } from '#shared/telemetry/producer.js';
import type { Journal } from './journal.js';
import type { ReplayOptions } from './options.js';

/** How often an idle replayer looks for work (a backlog and a ready connection). */
const IDLE_POLL_MS = 50;
const PROGRESS_LOG_MS = 5000;

export interface ReplayerDeps {
  logger: Logger;
  clock: Clock;
  /** The replayer's own producer; its onFailed hook must call `batchFailed` and return true. */
  producer: TelemetryProducer;
  /** Largest chunk handed to the producer at once (within its maxBufferedEntries). */
  chunkMax: number;
  /** Redis is connected. */
  connected(): boolean;
  /** The store-and-forward policy allows replaying now (ordered mode waits for the live path to be idle). */
  mayReplay(): boolean;
  /** Entries acknowledged and committed. */
  onReplayed?(count: number): void;
}

export class Replayer {
  private running = false;
  private loop: Promise<void> | undefined;
  private failed = new Set<EncodedEnvelope>();
  /** Held entries taken from the journal and not yet settled (given back on stop). */
  private sendingHeld: EncodedEnvelope[] = [];
  private failures = 0;
  private tokens = 0;
  private lastRefill = 0;
  private wake: (() => void) | undefined;
  private episode: { since: number; replayed: number; lastLog: number } | undefined;
  replayedTotal = 0;

  constructor(
    private readonly journal: Journal,
    private readonly options: ReplayOptions,
    private readonly deps: ReplayerDeps,
  ) {}

  /** True while a backlog is being replayed. */
  get isReplaying(): boolean {
    return this.episode !== undefined;
  }

  /** Held entries whose resend had not settled when the replayer stopped (for the journal to keep). */
  takeUnsettled(): EncodedEnvelope[] {
    const out = this.sendingHeld;
    this.sendingHeld = [];
    return out;
  }

  /** Hook for the replay producer's onFailed. */
  batchFailed(entries: readonly EncodedEnvelope[]): void {
    for (const e of entries) this.failed.add(e);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.lastRefill = this.deps.clock.now();
    this.loop = this.run().catch((err: unknown) => {
      this.deps.logger.error({ err: String(err) }, 'journal replay stopped by an error');
    });
  }

  /** Stops after the chunk in flight, waiting at most `maxWaitMs` for it. */
  async stop(maxWaitMs: number): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.wake?.();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.loop,
      new Promise<void>((r) => (timer = this.deps.clock.setTimeout(r, maxWaitMs))),
    ]);
    if (timer) this.deps.clock.clearTimeout(timer);
  }

  private async run(): Promise<void> {
    const { logger } = this.deps;
    while (this.running) {
      if (this.journal.isClosed) return;
      if (this.journal.unread === 0 || !this.deps.connected() || !this.deps.mayReplay()) {
        if (this.episode && this.journal.unsent === 0) this.endEpisode();
        await this.sleep(IDLE_POLL_MS);
        continue;
      }
      const n = await this.take();
      if (n === 0 || !this.running) continue;
      if (!this.episode) {
        const now = this.deps.clock.now();
        this.episode = { since: now, replayed: 0, lastLog: now };
        logger.info(
          { unsent: this.journal.unsent, bytes: this.journal.bytes, mode: this.options.mode },
          'journal replay started',
        );
      }
      if (this.journal.heldCount > 0) {
        await this.sendHeld(n);
        if (this.journal.isClosed) return;
        continue;
      }
      const { first, entries } = this.journal.read(n);
      if (entries.length === 0) {
        // Nothing readable although `unread` said otherwise: wait a turn of the event loop
        // rather than spin (with replayRate=0 nothing else in this loop would yield).
        await this.sleep(IDLE_POLL_MS);
        continue;
      }
      this.failed.clear();
      for (const e of entries) {
        // Cannot refuse: chunkMax is within the producer's maxBufferedEntries and it is idle here.
        if (!this.deps.producer.offer(e)) this.failed.add(e);
      }
      await this.deps.producer.flush();
      if (this.journal.isClosed) return;
      if (this.failed.size === 0) {
        this.failures = 0;
        this.journal.commit(first + entries.length);
        this.replayedTotal += entries.length;
        this.episode.replayed += entries.length;
        this.deps.onReplayed?.(entries.length);
        this.logProgress();
      } else {
        this.chunkFailed(first, entries);
        await this.sleep(reconnectDelay(this.failures++, 2000));
      }
    }
  }

  /**
   * Sends entries the journal holds in memory (their segment was deleted while
   * they may already have been in Redis): acknowledged means in Redis, either
   * appended now or refused as already there. What fails is held again.
   */
  private async sendHeld(n: number): Promise<void> {
    const entries = this.journal.takeHeld(n);
    this.sendingHeld = entries;
    this.failed.clear();
    for (const e of entries) if (!this.deps.producer.offer(e)) this.failed.add(e);
    await this.deps.producer.flush();
    // Stopped meanwhile: stop() gave them back to the journal (takeUnsettled).
    if (this.journal.isClosed || this.sendingHeld !== entries) return;
    this.sendingHeld = [];
    if (this.failed.size === 0) {
      this.failures = 0;
      this.replayedTotal += entries.length;
      if (this.episode) this.episode.replayed += entries.length;
      this.deps.onReplayed?.(entries.length);
      this.logProgress();
      return;
    }
    const acked = entries.length - this.failed.size;
    if (acked > 0) {
      this.replayedTotal += acked;
      this.deps.onReplayed?.(acked);
    }
    this.journal.hold(entries.filter((e) => this.failed.has(e)));
    this.failed.clear();
    await this.sleep(reconnectDelay(this.failures++, 2000));
  }

  private chunkFailed(first: number, entries: readonly EncodedEnvelope[]): void {
    // Failed entries whose segment the drop-oldest policy deleted meanwhile are not lost: they
    // may be in Redis already, and the journal holds them in memory to send them again.
    const available = this.journal.firstAvailable;
    this.journal.hold(entries.filter((e, i) => first + i < available && this.failed.has(e)));
    this.journal.rewind();
    this.failed.clear();
  }

  /** Token bucket: how many entries may go now (0 after sleeping until one may). */
  private async take(): Promise<number> {
    const max = this.deps.chunkMax;
    const rate = this.options.rate;
    if (rate === 0) return max;
    const now = this.deps.clock.now();
    // A burst of at most 200 ms worth keeps the rate smooth after an idle spell.
    const burst = Math.max(1, Math.min(max, Math.round(rate / 5)));
    this.tokens = Math.min(burst, this.tokens + ((now - this.lastRefill) * rate) / 1000);
    this.lastRefill = now;
    const n = Math.min(max, Math.floor(this.tokens));
    if (n >= 1) {
      this.tokens -= n;
      return n;
    }
    await this.sleep(Math.ceil(((1 - this.tokens) * 1000) / rate));
    return 0;
  }

  private logProgress(): void {
    const ep = this.episode;
    if (!ep) return;
    const now = this.deps.clock.now();
    if (this.journal.unsent === 0) {
      this.endEpisode();
      return;
    }
    if (now - ep.lastLog < PROGRESS_LOG_MS) return;
    ep.lastLog = now;
    const seconds = Math.max(0.001, (now - ep.since) / 1000);
    this.deps.logger.info(
      {
        replayed: ep.replayed,
        unsent: this.journal.unsent,
        perSecond: Math.round(ep.replayed / seconds),
        oldestUnsentAgeMs: this.oldestAge(now),
      },
      'journal replay progress',
    );
  }

  private endEpisode(): void {
    const ep = this.episode;
    if (!ep) return;
    this.episode = undefined;
    this.deps.logger.info(
      { replayed: ep.replayed, durationMs: this.deps.clock.now() - ep.since },
      'journal drained',
    );
  }

  private oldestAge(now: number): number | undefined {
    const t = this.journal.oldestUnsentTime();
    return t === undefined ? undefined : Math.max(0, now - t);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.deps.clock.setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        this.deps.clock.clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }
}
