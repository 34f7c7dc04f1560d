/** Messages between the gateway and its projection thread (thread.ts, worker.ts). */
import type { Health } from '#shared/health.js';
import type { ProjectionMetrics } from './service.js';

/** How often the thread sends its metric totals and health. */
export const REPORT_INTERVAL_MS = 1000;

/** Counter totals by metric, each by label set (JSON of the labels; "{}" when none). */
export type MetricTotals = Record<keyof ProjectionMetrics, Record<string, number>>;

export type ToProjectionThread = { type: 'stop' };

export type FromProjectionThread =
  | { type: 'started' }
  | { type: 'failed'; error: string }
  | { type: 'report'; totals: MetricTotals; health: Health }
  | { type: 'stopped' };

export async function metricTotals(metrics: ProjectionMetrics): Promise<MetricTotals> {
  const out = {} as MetricTotals;
  for (const [name, counter] of Object.entries(metrics) as Array<
    [keyof ProjectionMetrics, ProjectionMetrics[keyof ProjectionMetrics]]
  >) {
    const byLabels: Record<string, number> = {};
    for (const v of (await counter.get()).values) byLabels[JSON.stringify(v.labels)] = v.value;
    out[name] = byLabels;
  }
  return out;
}
