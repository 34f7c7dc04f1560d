/**
 * Health that never lies: every place where a process drops, refuses or
 * force-trims data is a named condition here, and /healthz (shared/metrics.ts)
 * answers 503 while any of them holds.
 *
 * Two kinds of condition:
 * - a state holds while something is true now (back-pressure, a projection
 *   behind by more than its bound); it is asked at every report, so it can
 *   never be stale;
 * - a loss is an event (presence events dropped, publishes refused, a
 *   forced trim): it keeps the process unhealthy for `health.lossWindow`
 *   after the last one, with how many were lost since the first and when,
 *   so a scrape that comes a while after a short burst still sees it.
 *
 * Reasons carry a stable machine-readable `code` (see HEALTH_CODES and
 * docs/operator.md "Health and metrics") and a human `message`.
 */
import { type Clock, systemClock } from './clock.js';
import { opt } from './config/schema.js';

export const healthSchema = {
  'health.lossWindow': opt.duration(
    60_000,
    'After data is dropped, refused or force-trimmed, /healthz answers 503 for this long after the last loss (with the count and times), so a scrape after a short burst still sees it',
    { min: 100 },
  ),
} as const;

/** Every reason code a process can report; docs/operator.md explains each one. */
export const HEALTH_CODES = [
  'back-pressure',
  'presence-dropped',
  'publishes-refused',
  'readings-dropped',
  'sequence-forgotten',
  'journal-dropped',
  'projection-lag',
  'projection-dropped',
  'projection-failing',
  'projection-stopped',
  'retention-forced-trim',
  'retention-failing',
] as const;

export type HealthCode = (typeof HEALTH_CODES)[number];

export interface HealthReason {
  readonly code: HealthCode;
  readonly message: string;
  /** Loss: items lost since `since`. State: its figure, when it has one (e.g. entries behind). */
  readonly count?: number;
  /** ISO time: the first loss of the current window, or when the state was first seen. */
  readonly since?: string;
  /** Loss: ISO time of the last loss. */
  readonly last?: string;
}

/** What /healthz serves (and what services hand to the process that serves it). */
export interface Health {
  readonly healthy: boolean;
  readonly reasons: readonly HealthReason[];
}

export const HEALTHY: Health = { healthy: true, reasons: [] };

/** What a state check returns while its state holds (undefined otherwise). */
export interface StateReport {
  readonly message: string;
  readonly count?: number;
}

/** A loss condition: report each loss with hit(); `detail` (where, which) is shown for the last one. */
export interface LossCondition {
  hit(n?: number, detail?: string): void;
}

interface Loss {
  readonly code: HealthCode;
  readonly what: string;
  count: number;
  first: number;
  last: number;
  detail: string | undefined;
}

interface State {
  readonly code: HealthCode;
  readonly check: () => StateReport | undefined;
  since: number | undefined;
}

/** Joins the health of several components: unhealthy if any is, with every reason. */
export function joinHealth(parts: Iterable<Health>): Health {
  const reasons: HealthReason[] = [];
  let healthy = true;
  for (const h of parts) {
    if (!h.healthy) healthy = false;
    reasons.push(...h.reasons);
  }
  return { healthy: healthy && reasons.length === 0, reasons };
}

/** The named conditions of one component (or process), and its report. */
export class HealthBook {
  private readonly losses: Loss[] = [];
  private readonly conditions = new Map<HealthCode, LossCondition>();
  private readonly states: State[] = [];
  private readonly sources: Array<() => Health> = [];

  constructor(
    private readonly lossWindowMs: number = healthSchema['health.lossWindow'].default,
    private readonly clock: Clock = systemClock,
  ) {}

  /**
   * A loss condition. `what` completes "<count> ...", e.g. "presence events
   * dropped (gateway.maxPendingEvents were already waiting for Redis)".
   * Asked again for a code it has, it returns that condition: several parts
   * of a process (the agent's live and replay producers) then count as one.
   */
  loss(code: HealthCode, what: string): LossCondition {
    const known = this.conditions.get(code);
    if (known) return known;
    const loss: Loss = {
      code,
      what,
      count: 0,
      first: 0,
      last: Number.NEGATIVE_INFINITY,
      detail: undefined,
    };
    this.losses.push(loss);
    const condition: LossCondition = {
      hit: (n = 1, detail) => {
        if (n <= 0) return;
        const now = this.clock.now();
        // A loss after a quiet window starts a new count.
        if (now - loss.last >= this.lossWindowMs) {
          loss.count = 0;
          loss.first = now;
        }
        loss.count += n;
        loss.last = now;
        loss.detail = detail;
      },
    };
    this.conditions.set(code, condition);
    return condition;
  }

  /** A state condition: `check` is asked at every report and returns a report while the state holds. */
  state(code: HealthCode, check: () => StateReport | undefined): void {
    this.states.push({ code, check, since: undefined });
  }

  /** Another component's health, joined into this book's report (a service, a worker thread). */
  include(source: () => Health): void {
    this.sources.push(source);
  }

  report(): Health {
    const now = this.clock.now();
    const reasons: HealthReason[] = [];
    for (const s of this.states) {
      const r = s.check();
      if (!r) {
        s.since = undefined;
        continue;
      }
      s.since ??= now;
      reasons.push({
        code: s.code,
        message: r.message,
        ...(r.count === undefined ? {} : { count: r.count }),
        since: iso(s.since),
      });
    }
    for (const l of this.losses) {
      if (now - l.last >= this.lossWindowMs) continue;
      reasons.push({
        code: l.code,
        message: `${l.count} ${l.what} since ${iso(l.first)}, the last at ${iso(l.last)}${l.detail ? ` (${l.detail})` : ''}; reported for ${formatMs(this.lossWindowMs)} after the last (health.lossWindow)`,
        count: l.count,
        since: iso(l.first),
        last: iso(l.last),
      });
    }
    return joinHealth([{ healthy: true, reasons }, ...this.sources.map((s) => s())]);
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
