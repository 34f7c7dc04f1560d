/**
 * The latest-state projection: a consumer group over the telemetry partitions
 * that folds every reading into its device's state hash (shared/state.ts) by
 * sequence number, with projectState-1.lua (compare-and-set in one hash slot).
 * Late, out-of-order, replayed and redelivered entries never make a device's
 * state go back, so the view is the same whatever order entries arrive in and
 * however often they are processed.
 *
 * Delivery: entries are acknowledged only after their state is written (ack
 * after commit). At start, and after any failure, a consumer first re-reads its
 * own pending entries (XREADGROUP from id 0); entries another consumer (a dead
 * gateway) left pending longer than `claimIdle` are taken over with
 * XAUTOCLAIM. Folding is idempotent, so processing an entry twice is harmless.
 *
 * Within one read, only the highest sequence number per (device, type) can win
 * the compare-and-set, so the others are counted stale without a round trip:
 * one script call per device per round, not one per entry.
 */

import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { type Clock, systemClock } from '#shared/clock.js';
import { decodeEncodedEnvelope, type EncodedEnvelope } from '#shared/envelope.js';
import { type Health, HealthBook, type LossCondition } from '#shared/health.js';
import type { Keys } from '#shared/keys.js';
import { EpisodeLog, type Logger } from '#shared/log.js';
import { Counter, type Registry } from '#shared/metrics.js';
import type { RedisClient } from '#shared/redis/connect.js';
import { scripts } from '#shared/redis/scripts.js';
import { GroupReader, type StreamEntry } from '#shared/streams/group-reader.js';
import { idTime } from '#shared/streams/inspect.js';
import type { ProjectionOptions } from './options.js';

export interface ProjectionMetrics {
  entries: Counter;
  applied: Counter;
  stale: Counter;
  dropped: Counter<'reason'>;
  claimed: Counter;
  errors: Counter;
}

export function createProjectionMetrics(registry: Registry): ProjectionMetrics {
  const registers = [registry];
  return {
    entries: new Counter({
      name: 'projection_entries_total',
      help: 'Telemetry entries the projection processed',
      registers,
    }),
    applied: new Counter({
      name: 'projection_applied_total',
      help: 'Readings that became the newest of their (device, type)',
      registers,
    }),
    stale: new Counter({
      name: 'projection_stale_total',
      help: 'Readings ignored because a newer one (higher sequence number) was already folded in',
      registers,
    }),
    dropped: new Counter({
      name: 'projection_dropped_total',
      help: 'Entries the projection could not fold in: invalid (failed decoding) or missing (trimmed before it read them)',
      labelNames: ['reason'],
      registers,
    }),
    claimed: new Counter({
      name: 'projection_claimed_total',
      help: 'Entries taken over from other consumers that left them pending (XAUTOCLAIM)',
      registers,
    }),
    errors: new Counter({
      name: 'projection_errors_total',
      help: 'Rounds that failed (Redis errors); their entries stay pending and are retried',
      registers,
    }),
  };
}

export interface ProjectionDeps {
  logger: Logger;
  registry?: Registry;
  metrics?: ProjectionMetrics;
  clock?: Clock;
  /** health.lossWindow: how long a drop keeps health() unhealthy. */
  lossWindowMs?: number;
}

type RawEntry = StreamEntry;

/** State-script calls per pipeline on a standalone server (see runScripts). */
const SCRIPT_CHUNK = 250;
interface Batch {
  stream: string;
  entries: RawEntry[];
}

interface DeviceFold {
  arrival: number;
  /** type -> highest seq of this round and its packed reading "<seq> <time> <type> <payload>". */
  readings: Map<string, { seq: number; packed: string }>;
}

/** How often the group's lag is measured for health (one XINFO GROUPS per partition). */
export const LAG_CHECK_INTERVAL_MS = 1000;

/** One projectState-1.lua call: the device's partition state hash, the device, the newest arrival, its packed readings ("<seq> <time> <type> <payload>"). */
interface ProjectStateCall {
  stateKey: string;
  deviceId: string;
  arrival: number;
  readings: string[];
}

export class ProjectionService {
  private readonly logger: Logger;
  private readonly metrics: ProjectionMetrics | undefined;
  private readonly clock: Clock;
  private readonly streams: string[];
  /** One group reader per partition: it keeps where own pending entries and XAUTOCLAIM are read on. */
  private readonly readers = new Map<string, GroupReader>();
  private lastClaim = 0;
  private stopped = true;
  private loopDone: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private lastError: string | undefined;
  /** Entries of the group not yet folded in (lag + pending over the partitions), at the last check. */
  private lag: number | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private readonly book: HealthBook;
  private readonly dropHealth: LossCondition;
  /** The next round's read, started while the current round is folded in. */
  private prefetch: Promise<Batch[]> | undefined;
  private closing = false;
  private drops = 0;
  private readonly dropEpisode: EpisodeLog;
  private readonly errorEpisode: EpisodeLog;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly options: ProjectionOptions,
    deps: ProjectionDeps,
  ) {
    this.logger = deps.logger.child({ component: 'projection' });
    this.metrics = deps.metrics ?? (deps.registry ? createProjectionMetrics(deps.registry) : undefined);
    this.clock = deps.clock ?? systemClock;
    this.streams = keys.allTelemetryStreams();
    const { group, consumer, batchSize } = options;
    for (const s of this.streams)
      this.readers.set(s, new GroupReader(client, s, { group, consumer, count: batchSize }));
    this.dropEpisode = new EpisodeLog(this.logger, 'projection dropping entries');
    this.errorEpisode = new EpisodeLog(this.logger, 'projection failing');
    this.book = new HealthBook(deps.lossWindowMs, this.clock);
    this.dropHealth = this.book.loss(
      'projection-dropped',
      'telemetry entries the projection could not fold in: undecodable, or trimmed before it read them (see projection_dropped_total)',
    );
    this.book.state('projection-failing', () =>
      this.lastError ? { message: `projection rounds failing: ${this.lastError}` } : undefined,
    );
    this.book.state('projection-lag', () => {
      const { maxLag } = this.options;
      if (maxLag <= 0 || this.lag === undefined || this.lag <= maxLag) return undefined;
      return {
        message: `the projection is ${this.lag} entries behind, over projection.maxLag (${maxLag}): the latest-state view is stale`,
        count: this.lag,
      };
    });
  }

  /** Creates the consumer group on every partition (from the start of each stream; idempotent). */
  async ensureGroups(): Promise<void> {
    await Promise.all([...this.readers.values()].map((r) => r.ensureGroup()));
  }

  readonly name = 'projection';

  async start(): Promise<void> {
    if (!this.stopped) return;
    await this.ensureGroups();
    this.stopped = false;
    this.loopDone = this.loop();
    if (this.options.maxLag > 0) {
      // Its own timer, not the loop's: a projection stuck in a slow round is exactly what it must see.
      this.lagTimer = this.clock.setInterval(() => {
        this.measureLag().catch(() => {
          // Redis unreachable: the failing rounds report it (projection-failing).
        });
      }, LAG_CHECK_INTERVAL_MS);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.closing = true;
    if (this.lagTimer) this.clock.clearInterval(this.lagTimer);
    this.lagTimer = undefined;
    this.wake?.();
    await this.loopDone;
    // Fold in and acknowledge what the last round read ahead, rather than leave it pending.
    if (this.prefetch) await this.runRound().catch(() => undefined);
  }

  health(): Health {
    return this.book.report();
  }

  /**
   * Entries of the group not yet folded in, over every partition: XINFO GROUPS
   * `lag` (not yet delivered) plus `pending` (delivered, not acknowledged).
   * Redis 7 answers a null lag when it cannot tell (after XDEL or XSETID past
   * entries, see the XINFO GROUPS docs); such a partition counts its pending only.
   */
  async measureLag(): Promise<number> {
    const perStream = await Promise.all(
      this.streams.map(async (stream) => {
        const groups = (await this.client.xinfo('GROUPS', stream)) as unknown[][];
        for (const g of groups) {
          const info = new Map<string, unknown>();
          for (let i = 0; i + 1 < g.length; i += 2) info.set(String(g[i]), g[i + 1]);
          if (info.get('name') !== this.options.group) continue;
          const lag = info.get('lag');
          return Number(info.get('pending') ?? 0) + (typeof lag === 'number' ? lag : 0);
        }
        return 0;
      }),
    );
    this.lag = perStream.reduce((a, b) => a + b, 0);
    return this.lag;
  }

  /**
   * Keeping up, the loop is paced: it reads one partition at a time, each
   * every `interval`, the partitions spread evenly over it. A device lives in
   * one partition, so its readings of one interval still share one script
   * call, and Redis and the event loop see a small step every
   * interval/partitions instead of a burst for all partitions at once (which
   * showed as PUBACK latency). A backlog (a full batch read) is caught up
   * with back-to-back rounds over all partitions, the next read ahead.
   */
  private async loop(): Promise<void> {
    let next = 0;
    const { interval, idle } = this.options;
    while (!this.stopped) {
      const startedAt = this.clock.now();
      const paced = interval > 0 && !this.prefetch;
      const streams = paced ? [this.streams[next]!] : this.streams;
      if (paced) next = (next + 1) % this.streams.length;
      let n = 0;
      try {
        n = await this.runRound(streams);
      } catch {
        // counted and logged in runRound
      }
      if (this.stopped) break;
      if (this.prefetch) continue;
      if (paced) await this.pause(startedAt + interval / this.streams.length - this.clock.now());
      else if (n === 0) await this.pause(idle);
    }
  }

  private async pause(ms: number): Promise<void> {
    if (ms <= 0) return;
    await new Promise<void>((resolve) => {
      const t = this.clock.setTimeout(resolve, ms);
      this.wake = () => {
        this.clock.clearTimeout(t);
        resolve();
      };
    });
    this.wake = undefined;
  }

  /** Reads one batch from each partition given, folds it in and acknowledges it. Returns entries processed. */
  async runRound(streams: readonly string[] = this.streams): Promise<number> {
    try {
      const prefetched = this.prefetch;
      this.prefetch = undefined;
      const all = await (prefetched ?? this.readAll(streams));
      // With a backlog (a partition gave a full batch), Redis already serves the next read while this
      // round is folded in: Node and Redis work in parallel. Otherwise the loop paces the next read.
      const backlog = all.some((b) => b.entries.length >= this.options.batchSize);
      if (backlog && !this.closing) {
        const next = this.readAll(streams);
        next.catch(() => undefined); // its failure surfaces when the next round awaits it
        this.prefetch = next;
      }
      const n = await this.process(all);
      this.lastError = undefined;
      this.errorEpisode.end();
      return n;
    } catch (err) {
      // Whatever was read stays pending; re-read own pending entries first next time
      // (after the read in flight, if any, has settled, so its cursor updates come first).
      await this.prefetch?.catch(() => undefined);
      this.prefetch = undefined;
      for (const r of this.readers.values()) r.rewind();
      this.metrics?.errors.inc();
      this.lastError = err instanceof Error ? err.message : String(err);
      this.errorEpisode.hit({ err: this.lastError });
      throw err;
    }
  }

  private async readAll(streams: readonly string[]): Promise<Batch[]> {
    const batches = await Promise.all(streams.map((s) => this.read(s)));
    const claimed = await this.claimAbandoned();
    return [...batches, ...claimed].filter((b) => b.entries.length > 0);
  }

  /** Runs rounds until one finds nothing (tests, benchmarks). */
  async drain(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.runRound();
      total += n;
      if (n === 0) return total;
    }
  }

  private async read(stream: string): Promise<Batch> {
    // Own pending entries first (after a failure, or a previous life), then new ones.
    const { entries } = await this.readerOf(stream).read();
    return { stream, entries };
  }

  private readerOf(stream: string): GroupReader {
    const reader = this.readers.get(stream);
    if (!reader) throw new TypeError(`${stream} is not a telemetry partition of this projection`);
    return reader;
  }

  /** Takes over entries other consumers left pending longer than claimIdle (at most every claimIdle). */
  private async claimAbandoned(): Promise<Batch[]> {
    const now = this.clock.now();
    if (now - this.lastClaim < this.options.claimIdle) return [];
    this.lastClaim = now;
    return Promise.all(
      this.streams.map(async (stream) => {
        const claimed = await this.readerOf(stream).claim(this.options.claimIdle);
        // Redis 7 removes entries that were trimmed meanwhile from the PEL and lists their ids.
        if (claimed.deleted.length > 0) this.dropped('missing', claimed.deleted.length, { stream });
        this.metrics?.claimed.inc(claimed.entries.length);
        return { stream, entries: claimed.entries };
      }),
    );
  }

  private async process(batches: Batch[]): Promise<number> {
    const devices = new Map<string, DeviceFold>();
    let entries = 0;
    let stale = 0;
    const dropsBefore = this.drops;
    for (const { stream, entries: list } of batches) {
      for (const [id, fields] of list) {
        entries++;
        if (!fields) {
          // In the PEL but trimmed from the stream: retention already counted the loss.
          this.dropped('missing', 1, { stream, id });
          continue;
        }
        let e: EncodedEnvelope;
        try {
          e = decodeEncodedEnvelope(fields);
        } catch (err) {
          this.dropped('invalid', 1, { stream, id, err: (err as Error).message });
          continue;
        }
        let fold = devices.get(e.deviceId);
        if (!fold) {
          fold = { arrival: 0, readings: new Map() };
          devices.set(e.deviceId, fold);
        }
        fold.arrival = Math.max(fold.arrival, idTime(id));
        const held = fold.readings.get(e.type);
        if (held && held.seq >= e.seq) {
          stale++;
          continue;
        }
        if (held) stale++;
        fold.readings.set(e.type, { seq: e.seq, packed: `${e.seq} ${e.time} ${e.type} ${e.payload}` });
      }
      // A round can hold thousands of entries: let the gateway's MQTT traffic (PUBACKs wait on the
      // event loop) in between partitions rather than after the whole round.
      await yieldToEventLoop();
    }
    if (entries === 0) return 0;

    let applied = 0;
    const calls: ProjectStateCall[] = [];
    for (const [deviceId, fold] of devices) {
      const readings: string[] = [];
      for (const r of fold.readings.values()) readings.push(r.packed);
      calls.push({
        stateKey: this.keys.partitionStateFor(deviceId),
        deviceId,
        arrival: fold.arrival,
        readings,
      });
    }
    const results = await this.runScripts(calls);
    for (const [a, s] of results) {
      applied += a;
      stale += s;
    }
    // Ack after commit: only now is every entry's effect in Redis.
    await Promise.all(
      batches.map(({ stream, entries: list }) =>
        this.client.xack(stream, this.options.group, ...list.map(([id]) => id)),
      ),
    );
    this.metrics?.entries.inc(entries);
    this.metrics?.applied.inc(applied);
    this.metrics?.stale.inc(stale);
    if (this.drops === dropsBefore) this.dropEpisode.end();
    return entries;
  }

  /**
   * Standalone: pipelines of SCRIPT_CHUNK calls, all sent before the first
   * reply is awaited (a few writes, one round trip), yielding to the event
   * loop between chunks so that building them never holds up other traffic
   * for long. Cluster: one call per device, routed by slot.
   */
  private async runScripts(calls: ProjectStateCall[]): Promise<Array<[number, number]>> {
    if (this.client instanceof Redis) {
      scripts(this.client); // defines the command, so pipelines have it too
      const sent: Array<Promise<Array<[Error | null, unknown]> | null>> = [];
      for (let i = 0; i < calls.length; i += SCRIPT_CHUNK) {
        if (i > 0) await yieldToEventLoop();
        const pipe = this.client.pipeline() as unknown as {
          projectState(stateKey: string, deviceId: string, arrival: number, ...readings: string[]): void;
          exec(): Promise<Array<[Error | null, unknown]> | null>;
        };
        for (const c of calls.slice(i, i + SCRIPT_CHUNK))
          pipe.projectState(c.stateKey, c.deviceId, c.arrival, ...c.readings);
        const reply = pipe.exec();
        reply.catch(() => undefined); // awaited below, after every chunk is sent
        sent.push(reply);
      }
      const replies = (await Promise.all(sent)).flatMap((r) => r ?? []);
      return replies.map(([err, value]) => {
        if (err) throw err;
        return value as [number, number];
      });
    }
    const s = scripts(this.client);
    return Promise.all(calls.map((c) => s.projectState(c.stateKey, c.deviceId, c.arrival, ...c.readings)));
  }

  private dropped(reason: 'invalid' | 'missing', n: number, fields: Record<string, unknown>): void {
    this.drops += n;
    this.metrics?.dropped.inc({ reason }, n);
    this.dropHealth.hit(n);
    this.dropEpisode.hit({ reason, ...fields }, n);
  }
}
