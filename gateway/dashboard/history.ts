/**
 * The dashboard's time series: every `dashboard.sampleInterval` the sampler
 * reads, in a few round trips, the counters the charts need (entries added to
 * the telemetry partitions, consumer-group lag and pending counts, dead
 * letters, rejected input, results) and keeps them in a fixed-size ring
 * buffer, so memory stays bounded however long the gateway runs.
 *
 * Throughput comes from XINFO STREAM's `entries-added` (Redis 7.0+), a counter
 * of every entry ever appended that trimming does not lower; the stream
 * length would drop whenever retention trims and read as negative traffic.
 */
import type { Clock } from '#shared/clock.js';
import type { Keys } from '#shared/keys.js';
import type { RedisClient } from '#shared/redis/connect.js';
import { num, pairs } from '#shared/streams/inspect.js';

export interface Sample {
  /** Gateway time of the sample, ms since the epoch. */
  readonly t: number;
  /** Entries ever added to the telemetry partitions (sum of entries-added). */
  readonly ingested: number;
  /** Telemetry entries per second since the previous sample. */
  readonly ingestedPerS: number;
  /** Entries currently held in the telemetry partitions. */
  readonly telemetryLength: number;
  /** Telemetry entries not yet delivered to a consumer group, summed over groups; null when Redis cannot tell. */
  readonly lag: number | null;
  /** Delivered but not acknowledged, summed over the groups of the telemetry partitions and the results stream. */
  readonly pending: number;
  /** Commands in the dead-letter stream. */
  readonly deadLetters: number;
  /** Entries in the rejected stream. */
  readonly rejected: number;
  /** Command results ever published, and per second since the previous sample. */
  readonly results: number;
  readonly resultsPerS: number;
  /** MQTT publishes this gateway holds until their append is acknowledged. */
  readonly gatewayPending: number;
}

/** A fixed-capacity ring buffer: push overwrites the oldest once full. */
export class Ring<T> {
  private readonly items: (T | undefined)[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`capacity ${capacity} must be >= 1`);
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(item: T): void {
    this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  /** The newest `n` items (all when n is absent), oldest first. */
  last(n = this.count): T[] {
    const take = Math.max(0, Math.min(n, this.count));
    const out: T[] = [];
    for (let i = take; i > 0; i--) {
      const item = this.items[(this.next - i + this.capacity) % this.capacity];
      if (item !== undefined) out.push(item);
    }
    return out;
  }

  latest(): T | undefined {
    return this.count === 0 ? undefined : this.items[(this.next - 1 + this.capacity) % this.capacity];
  }
}

interface StreamFigures {
  length: number;
  added: number;
  /** Summed over groups; null if any group's lag is unknown. */
  lag: number | null;
  pending: number;
}

const EMPTY: StreamFigures = { length: 0, added: 0, lag: 0, pending: 0 };

/** XINFO STREAM (+ XINFO GROUPS when the stream has groups) of one stream; zeros when it does not exist yet. */
async function streamFigures(client: RedisClient, key: string): Promise<StreamFigures> {
  let info: Map<string, unknown>;
  try {
    info = pairs(await client.xinfo('STREAM', key));
  } catch (err) {
    if (/no such key/i.test((err as Error).message)) return EMPTY;
    throw err;
  }
  const length = num(info.get('length')) ?? 0;
  const added = num(info.get('entries-added')) ?? length;
  let lag: number | null = 0;
  let pending = 0;
  if ((num(info.get('groups')) ?? 0) > 0) {
    const groups = (await client.xinfo('GROUPS', key)) as unknown[];
    for (const raw of groups) {
      const g = pairs(raw);
      pending += num(g.get('pending')) ?? 0;
      const l = num(g.get('lag'));
      lag = lag === null || l === null ? null : lag + l;
    }
  }
  return { length, added, lag, pending };
}

export interface SamplerDeps {
  readonly client: RedisClient;
  readonly keys: Keys;
  readonly clock: Clock;
  /** Publishes the gateway holds (its ingestor's count). */
  readonly gatewayPending: () => number;
  readonly onError: (err: Error) => void;
}

export class MetricsSampler {
  readonly history: Ring<Sample>;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly deps: SamplerDeps,
    historySize: number,
    private readonly intervalMs: number,
  ) {
    this.history = new Ring<Sample>(historySize);
  }

  start(): void {
    void this.tick();
    this.timer = this.deps.clock.setInterval(() => void this.tick(), this.intervalMs);
  }

  stop(): void {
    if (this.timer) this.deps.clock.clearInterval(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    // A slow Redis must not stack up samplers: skip a tick rather than queue one.
    if (this.busy) return;
    this.busy = true;
    try {
      this.history.push(await this.sample());
    } catch (err) {
      this.deps.onError(err as Error);
    } finally {
      this.busy = false;
    }
  }

  /** Reads one sample (exported for tests through the service). */
  async sample(): Promise<Sample> {
    const { client, keys, clock } = this.deps;
    const [telemetry, results, deadLetters, rejected] = await Promise.all([
      Promise.all(keys.allTelemetryStreams().map((k) => streamFigures(client, k))),
      streamFigures(client, keys.results()),
      client.xlen(keys.deadLetters()),
      client.xlen(keys.rejected()),
    ]);
    const t = clock.now();
    let ingested = 0;
    let telemetryLength = 0;
    let lag: number | null = 0;
    let pending = results.pending;
    for (const f of telemetry) {
      ingested += f.added;
      telemetryLength += f.length;
      pending += f.pending;
      lag = lag === null || f.lag === null ? null : lag + f.lag;
    }
    const prev = this.history.latest();
    const perS = (now: number, before: number | undefined) => {
      if (prev === undefined || before === undefined || t <= prev.t) return 0;
      // A stream deleted and recreated restarts its counter: never report negative traffic.
      return Math.max(0, Math.round(((now - before) * 1000) / (t - prev.t)));
    };
    return {
      t,
      ingested,
      ingestedPerS: perS(ingested, prev?.ingested),
      telemetryLength,
      lag,
      pending,
      deadLetters,
      rejected,
      results: results.added,
      resultsPerS: perS(results.added, prev?.results),
      gatewayPending: this.deps.gatewayPending(),
    };
  }
}
