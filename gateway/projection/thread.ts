/**
 * The latest-state projection as a gateway service on a worker thread
 * (worker.ts). In the gateway's own event loop, reading every telemetry entry
 * back, decoding it and collecting its garbage delayed PUBACKs and cost broker
 * mode about a quarter of its rate (bench/gateway.ts, docs/gateway.md). The
 * thread has its own Redis connection; its metric totals and health come back
 * by message (thread-protocol.ts) into the gateway's registry and /healthz.
 */
import { Worker } from 'node:worker_threads';
import { HEALTHY, type Health } from '#shared/health.js';
import type { Logger } from '#shared/log.js';
import type { Registry } from '#shared/metrics.js';
import type { GatewayService } from '../services.js';
import { createProjectionMetrics, type ProjectionMetrics } from './service.js';
import type { FromProjectionThread, MetricTotals } from './thread-protocol.js';
import type { ProjectionWorkerData } from './worker.js';
import { projectionWorkerEntry } from './worker-entry.js';

/** How long start and stop wait for the thread before giving up on it. */
const THREAD_TIMEOUT_MS = 30_000;

export class ProjectionThread implements GatewayService {
  readonly name = 'projection';
  private worker: Worker | undefined;
  private readonly metrics: ProjectionMetrics;
  private readonly seen = new Map<string, number>();
  private lastHealth: Health = HEALTHY;
  private exitedUnexpectedly: string | undefined;
  private stopping = false;
  private exited = false;

  constructor(
    private readonly data: ProjectionWorkerData,
    registry: Registry,
    private readonly logger: Logger,
  ) {
    this.metrics = createProjectionMetrics(registry);
  }

  async start(): Promise<void> {
    // The worker's code: bundled from its TypeScript once, no loader registered in the thread (worker-entry.ts).
    const entry = await projectionWorkerEntry();
    const worker =
      entry.kind === 'file'
        ? new Worker(entry.url, { workerData: this.data })
        : new Worker(entry.code, { eval: true, workerData: this.data });
    this.worker = worker;
    worker.on('message', (m: FromProjectionThread) => {
      if (m.type === 'report') this.apply(m.totals, m.health);
    });
    worker.on('exit', (code) => {
      this.exited = true;
      if (this.stopping) return;
      this.exitedUnexpectedly = `projection thread exited (code ${code})`;
      this.logger.error({ code }, 'projection thread exited; the latest-state view is not updated');
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('projection thread did not start in time')),
        THREAD_TIMEOUT_MS,
      );
      const done = (err?: Error) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        if (err) reject(err);
        else resolve();
      };
      const onMessage = (m: FromProjectionThread) => {
        if (m.type === 'started') done();
        else if (m.type === 'failed') done(new Error(`projection: ${m.error}`));
      };
      const onError = (err: Error) => done(err);
      worker.on('message', onMessage);
      worker.once('error', onError);
    });
    worker.on('error', (err) => {
      this.exitedUnexpectedly = `projection thread failed: ${err.message}`;
      this.logger.error({ err: err.message }, 'projection thread failed');
    });
  }

  async stop(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.stopping = true;
    this.worker = undefined;
    if (this.exited) return; // it died earlier (reported then): nothing to stop
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ type: 'stop' });
    const timer = setTimeout(() => void worker.terminate(), THREAD_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  health(): Health {
    if (this.exitedUnexpectedly)
      return {
        healthy: false,
        reasons: [
          {
            code: 'projection-stopped',
            message: `${this.exitedUnexpectedly}: the latest-state view is not updated`,
          },
        ],
      };
    return this.lastHealth;
  }

  /** Adds what the thread's counters gained since its last report to the gateway's counters. */
  private apply(totals: MetricTotals, health: Health): void {
    this.lastHealth = health;
    for (const [name, byLabels] of Object.entries(totals) as Array<
      [keyof ProjectionMetrics, Record<string, number>]
    >) {
      for (const [labelsText, total] of Object.entries(byLabels)) {
        const key = `${name} ${labelsText}`;
        const delta = total - (this.seen.get(key) ?? 0);
        this.seen.set(key, total);
        if (delta <= 0) continue;
        const labels = JSON.parse(labelsText) as Record<string, string>;
        const counter = this.metrics[name] as {
          inc(labels: Record<string, string>, n: number): void;
          inc(n: number): void;
        };
        if (Object.keys(labels).length > 0) counter.inc(labels, delta);
        else counter.inc(delta);
      }
    }
  }
}
