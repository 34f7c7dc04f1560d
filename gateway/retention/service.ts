/**
 * Retention: trims every stream family by its policy, lag-aware.
 *
 * Each stream is trimmed by one call (or a few, for big trims) of
 * trimStream-1.lua, which reads the consumer groups' positions and trims in
 * one atomic step. Hence:
 * - the soft policies (age, length) never remove an entry some group has not
 *   yet been delivered or has not acknowledged;
 * - the hard memory cap does, and the script returns, per group, exactly how
 *   many of the removed entries that group had not processed; they are
 *   counted (retention_forced_loss_entries_total), logged, and make /healthz
 *   report unhealthy (retention-forced-trim) for health.lossWindow after the
 *   last pass that lost any;
 * - several gateways may run retention on the same streams at the same time:
 *   no lease is needed, each call sees and changes the stream atomically and
 *   every removed entry is counted by the one call that removed it.
 *
 * The devices' command streams (family `commands`, one stream per device) are
 * found by an incremental SCAN, about `retention.commands.scanPerPass` keys
 * per pass, so a pass stays bounded however big the fleet is. A command
 * stream with no consumer group yet (its agent or gateway has not started
 * reading) is held back whole by the soft policies: none of its commands has
 * been read. Their metrics are aggregated over the streams of the last
 * complete scan cycle (a series per device would grow with the fleet).
 */
import { type Clock, systemClock } from '#shared/clock.js';
import { type Health, HealthBook, type LossCondition } from '#shared/health.js';
import type { Keys } from '#shared/keys.js';
import { EpisodeLog, type Logger } from '#shared/log.js';
import type { Registry } from '#shared/metrics.js';
import type { RedisClient } from '#shared/redis/connect.js';
import {
  commandStreamPattern,
  familyStreams,
  idTime,
  type StreamFamily,
  StreamScanner,
} from '#shared/streams/inspect.js';
import { createRetentionMetrics, type RetentionMetrics } from './metrics.js';
import { type RetentionOptions, validatePolicy } from './options.js';
import { type GroupOutcome, trimStream } from './trim-script.js';

export type { GroupOutcome };

export interface StreamOutcome {
  readonly key: string;
  readonly family: StreamFamily;
  readonly lengthBefore: number;
  readonly removed: { age: number; length: number; cap: number };
  readonly lengthAfter: number;
  readonly memoryBytes: number;
  /** The group that held back a soft policy, if one did. */
  readonly blockedBy: string | null;
  /** Server time the age policy measured from. */
  readonly now: number;
  readonly groups: GroupOutcome[];
  /** Script calls made (more than one when the trim was bigger than retention.maxRemovePerCall). */
  readonly calls: number;
}

export interface PassReport {
  readonly streams: StreamOutcome[];
  readonly trimmed: number;
  /** Unprocessed entries lost to the hard cap, summed over groups. */
  readonly lost: number;
  readonly errors: Array<{ key: string; error: string }>;
  readonly durationMs: number;
}

export interface RetentionDeps {
  logger: Logger;
  registry?: Registry;
  metrics?: RetentionMetrics;
  clock?: Clock;
  /** Time the age policy measures from; default: the Redis server's TIME (the clock that stamps ids). */
  now?: () => number;
  /** health.lossWindow: how long a forced trim keeps health() unhealthy. */
  lossWindowMs?: number;
}

/** Safety bound on script calls per stream per pass (each removes up to retention.maxRemovePerCall). */
const MAX_CALLS_PER_STREAM = 1000;

/** Command streams trimmed at once (one script call each; bounds the requests in flight). */
const COMMAND_STREAMS_IN_FLIGHT = 64;

/**
 * Group name under which the hard cap's removals from a stream that has no
 * group at all are counted: all of them were unread. Not a valid group name
 * clash in practice (the project's groups are named by words), and the same
 * marker trimStream-1.lua returns as blockedBy for such a stream.
 */
export const NO_GROUP = '*';

/** Figures of the command streams over one scan cycle, exported as one series per group. */
interface CommandsView {
  streams: number;
  length: number;
  memory: number;
  groups: Map<string, { lag: number; pending: number; oldestPendingAge: number; blocked: number }>;
}

function emptyCommandsView(): CommandsView {
  return { streams: 0, length: 0, memory: 0, groups: new Map() };
}

export class RetentionService {
  private readonly logger: Logger;
  private readonly metrics: RetentionMetrics | undefined;
  private readonly clock: Clock;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<PassReport> | undefined;
  private stopped = true;
  private lastPass: PassReport | undefined;
  private readonly blockedEpisodes = new Map<string, EpisodeLog>();
  private readonly commandScanner: StreamScanner;
  private readonly commandsLabel: string;
  /** The cycle being scanned, and the last complete one (what the gauges show). */
  private commandsCycle = emptyCommandsView();
  private commandsView: CommandsView | undefined;
  private readonly book: HealthBook;
  private readonly forcedTrim: LossCondition;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly options: RetentionOptions,
    private readonly deps: RetentionDeps,
  ) {
    for (const [family, policy] of Object.entries(options.policies)) {
      validatePolicy(family as StreamFamily, policy);
    }
    this.logger = deps.logger.child({ component: 'retention' });
    this.metrics = deps.metrics ?? (deps.registry ? createRetentionMetrics(deps.registry) : undefined);
    this.clock = deps.clock ?? systemClock;
    this.commandsLabel = commandStreamPattern(keys);
    this.commandScanner = new StreamScanner(client, this.commandsLabel, options.commandsScanPerPass);
    this.book = new HealthBook(deps.lossWindowMs, this.clock);
    this.forcedTrim = this.book.loss(
      'retention-forced-trim',
      'entries a consumer group had not processed were trimmed by the hard memory cap (retention.<family>.maxBytes; see retention_forced_loss_entries_total)',
    );
    this.book.state('retention-failing', () => {
      const errors = this.lastPass?.errors ?? [];
      if (errors.length === 0) return undefined;
      const list = errors.map((e) => `${e.key}: ${e.error}`).join('; ');
      return {
        message: `the last retention pass could not trim ${errors.length} stream(s): ${list}`,
        count: errors.length,
      };
    });
  }

  readonly name = 'retention';

  /** Runs a pass now and then every `interval` (never two at once in one process). */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    const loop = () => {
      if (this.stopped) return;
      this.running = this.runPass();
      this.running
        .catch((err: unknown) => this.logger.error({ err }, 'retention pass failed'))
        .finally(() => {
          this.running = undefined;
          if (!this.stopped) this.timer = this.clock.setTimeout(loop, this.options.interval);
        });
    };
    loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /**
   * Unhealthy for health.lossWindow after a pass whose hard cap removed
   * unprocessed entries (retention-forced-trim), and while the last pass
   * could not trim some stream (retention-failing).
   */
  health(): Health {
    return this.book.report();
  }

  get lastReport(): PassReport | undefined {
    return this.lastPass;
  }

  /** One pass over every stream of the fixed families and the next slice of the command streams. */
  async runPass(): Promise<PassReport> {
    const started = this.clock.now();
    const errors: PassReport['errors'] = [];
    const trim = (family: StreamFamily, key: string) =>
      this.trimOne(family, key).catch((err: unknown) => {
        errors.push({ key, error: err instanceof Error ? err.message : String(err) });
        this.metrics?.passErrors.inc();
        return undefined;
      });
    const outcomes = await Promise.all(familyStreams(this.keys).map(({ family, key }) => trim(family, key)));
    let cycleEnd = false;
    try {
      const scanned = await this.commandScanner.next();
      cycleEnd = scanned.cycleEnd;
      for (let i = 0; i < scanned.keys.length; i += COMMAND_STREAMS_IN_FLIGHT) {
        const slice = scanned.keys.slice(i, i + COMMAND_STREAMS_IN_FLIGHT);
        outcomes.push(...(await Promise.all(slice.map((key) => trim('commands', key)))));
      }
    } catch (err) {
      errors.push({ key: this.commandsLabel, error: err instanceof Error ? err.message : String(err) });
      this.metrics?.passErrors.inc();
    }
    const streams = outcomes.filter((o): o is StreamOutcome => o !== undefined);
    for (const s of streams) if (s.family === 'commands') this.addToCommandsCycle(s);
    if (cycleEnd) {
      this.commandsView = this.commandsCycle;
      this.commandsCycle = emptyCommandsView();
    }
    const report: PassReport = {
      streams,
      trimmed: streams.reduce((n, s) => n + s.removed.age + s.removed.length + s.removed.cap, 0),
      lost: streams.reduce((n, s) => n + s.groups.reduce((m, g) => m + g.lost, 0), 0),
      errors,
      durationMs: this.clock.now() - started,
    };
    this.record(report);
    if (errors.length > 0) this.logger.error({ errors }, 'retention: some streams could not be trimmed');
    return report;
  }

  /** Trims one stream by its family's policy (repeating calls while the script says more is due). */
  async trimOne(family: StreamFamily, key: string): Promise<StreamOutcome> {
    const policy = this.options.policies[family];
    const capTarget = Math.floor(policy.maxBytes * (1 - this.options.capHeadroom));
    const removed = { age: 0, length: 0, cap: 0 };
    const lost = new Map<string, number>();
    let outcome: StreamOutcome | undefined;
    let lengthBefore: number | undefined;
    for (let calls = 1; ; calls++) {
      const r = await trimStream(this.client, {
        stream: key,
        maxAgeMs: policy.maxAge,
        maxLen: policy.maxLen,
        maxBytes: policy.maxBytes,
        capTargetBytes: capTarget,
        maxRemove: this.options.maxRemovePerCall,
        nowMs: this.deps.now?.() ?? 0,
        memorySamples: this.options.memorySamples,
        // A command stream with no group yet: nobody has read its commands (see the script's header).
        holdUngrouped: family === 'commands',
      });
      if (family === 'commands' && r.groups.length === 0 && r.removed.cap > 0) {
        // The hard cap removed commands no one had read: count them, under NO_GROUP.
        r.groups.push({
          name: NO_GROUP,
          lost: r.removed.cap,
          pending: 0,
          consumers: 0,
          lag: r.lengthAfter,
          lastDeliveredId: '0-0',
          oldestPendingId: null,
        });
      }
      lengthBefore ??= r.lengthBefore;
      removed.age += r.removed.age;
      removed.length += r.removed.length;
      removed.cap += r.removed.cap;
      for (const g of r.groups) lost.set(g.name, (lost.get(g.name) ?? 0) + g.lost);
      const { more: _more, ...step } = r;
      outcome = {
        ...step,
        key,
        family,
        lengthBefore,
        removed,
        calls,
        groups: r.groups.map((g) => ({ ...g, lost: lost.get(g.name) ?? 0 })),
      };
      if (!r.more) break;
      if (calls >= MAX_CALLS_PER_STREAM) {
        this.logger.warn(
          { stream: key, calls },
          'retention: stream still over policy after the per-pass call bound',
        );
        break;
      }
    }
    return outcome;
  }

  private record(report: PassReport): void {
    this.lastPass = report;
    const m = this.metrics;
    m?.passes.inc();
    m?.passSeconds.observe(report.durationMs / 1000);
    // Gauges are rebuilt from scratch each pass (synchronously, so no scrape sees them half-built),
    // which drops the series of groups and streams that no longer exist.
    m?.lag.reset();
    m?.pending.reset();
    m?.oldestPendingAge.reset();
    m?.blocked.reset();
    this.recordCommandsView();
    for (const s of report.streams) {
      const commands = s.family === 'commands';
      // Command streams are counted under the one pattern label (a series per device would grow with the fleet).
      const labels = { stream: commands ? this.commandsLabel : s.key, family: s.family };
      if (!commands) {
        m?.length.set(labels, s.lengthAfter);
        m?.memory.set(labels, s.memoryBytes);
      }
      for (const [reason, n] of Object.entries(s.removed))
        if (n > 0) m?.trimmed.inc({ ...labels, reason }, n);
      for (const g of s.groups) {
        const gl = { stream: labels.stream, group: g.name };
        if (!commands) {
          if (g.lag !== null) m?.lag.set(gl, g.lag);
          m?.pending.set(gl, g.pending);
          if (g.oldestPendingId)
            m?.oldestPendingAge.set(gl, Math.max(0, s.now - idTime(g.oldestPendingId)) / 1000);
          m?.blocked.set(gl, s.blockedBy === g.name ? 1 : 0);
        }
        if (g.lost > 0) {
          m?.forcedLoss.inc(gl, g.lost);
          this.forcedTrim.hit(g.lost, `${g.lost} of ${s.key}, group ${g.name}`);
          this.logger.error(
            {
              stream: s.key,
              group: g.name,
              lost: g.lost,
              memoryBytes: s.memoryBytes,
              cap: this.options.policies[s.family].maxBytes,
            },
            `retention: hard memory cap exceeded; ${g.lost} entries group ${g.name} had not processed were trimmed`,
          );
        }
      }
      // A device that is offline holds its own command stream back: normal, not worth a log line per device.
      if (!commands) this.trackBlocked(s);
    }
  }

  private addToCommandsCycle(s: StreamOutcome): void {
    const view = this.commandsCycle;
    view.streams++;
    view.length += s.lengthAfter;
    view.memory += s.memoryBytes;
    const names = new Set([...s.groups.map((g) => g.name), ...(s.blockedBy ? [s.blockedBy] : [])]);
    for (const name of names) {
      const g = s.groups.find((x) => x.name === name);
      let sum = view.groups.get(name);
      if (!sum) {
        sum = { lag: 0, pending: 0, oldestPendingAge: 0, blocked: 0 };
        view.groups.set(name, sum);
      }
      // NO_GROUP: every entry of the stream is unread.
      sum.lag += g ? (g.lag ?? 0) : s.lengthAfter;
      sum.pending += g?.pending ?? 0;
      if (g?.oldestPendingId)
        sum.oldestPendingAge = Math.max(sum.oldestPendingAge, s.now - idTime(g.oldestPendingId));
      if (s.blockedBy === name) sum.blocked++;
    }
  }

  /** The command streams' gauges: sums (maxima for ages) over the last complete scan cycle. */
  private recordCommandsView(): void {
    const m = this.metrics;
    const view = this.commandsView;
    if (!m || !view) return;
    const labels = { stream: this.commandsLabel, family: 'commands' };
    m.commandStreams.set(view.streams);
    m.length.set(labels, view.length);
    m.memory.set(labels, view.memory);
    for (const [group, g] of view.groups) {
      const gl = { stream: this.commandsLabel, group };
      m.lag.set(gl, g.lag);
      m.pending.set(gl, g.pending);
      if (g.oldestPendingAge > 0) m.oldestPendingAge.set(gl, g.oldestPendingAge / 1000);
      m.blocked.set(gl, g.blocked);
    }
  }

  /** Logs once when a group starts holding back a stream's policy and once when it stops. */
  private trackBlocked(s: StreamOutcome): void {
    let episode = this.blockedEpisodes.get(s.key);
    if (s.blockedBy) {
      if (!episode) {
        episode = new EpisodeLog(this.logger, `retention held back on ${s.key}`);
        this.blockedEpisodes.set(s.key, episode);
      }
      episode.hit({ stream: s.key, group: s.blockedBy, length: s.lengthAfter });
    } else {
      episode?.end({ stream: s.key });
    }
  }
}
