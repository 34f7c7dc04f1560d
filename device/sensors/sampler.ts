/**
 * Runs each sensor on its own interval. Intervals can change at run time (the
 * set-interval command). A slow read is never overlapped by the next one: that
 * tick is skipped and counted, instead of piling up reads.
 */
import type { Clock } from '#shared/clock.js';
import type { Payload } from '#shared/envelope.js';
import type { Logger } from '#shared/log.js';
import type { Sensor } from './sensor.js';

export type ReadingSink = (type: string, payload: Payload, time: number) => void;

interface Running {
  sensor: Sensor;
  intervalMs: number;
  timer: NodeJS.Timeout | undefined;
  busy: boolean;
  failing: boolean;
}

export class Sampler {
  private readonly running = new Map<string, Running>();
  private started = false;
  skippedTicks = 0;

  constructor(
    private readonly sink: ReadingSink,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  add(sensor: Sensor, intervalMs: number): void {
    if (this.running.has(sensor.type)) throw new TypeError(`sensor ${sensor.type} is already registered`);
    const r: Running = { sensor, intervalMs, timer: undefined, busy: false, failing: false };
    this.running.set(sensor.type, r);
    if (this.started) this.schedule(r);
  }

  get types(): string[] {
    return [...this.running.keys()];
  }

  intervalOf(type: string): number | undefined {
    return this.running.get(type)?.intervalMs;
  }

  /** Changes a sensor's interval; returns false for an unknown sensor. */
  setInterval(type: string, intervalMs: number): boolean {
    const r = this.running.get(type);
    if (!r) return false;
    r.intervalMs = intervalMs;
    if (this.started) {
      if (r.timer) this.clock.clearInterval(r.timer);
      this.schedule(r);
    }
    return true;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    for (const r of this.running.values()) this.schedule(r);
  }

  stop(): void {
    this.started = false;
    for (const r of this.running.values()) {
      if (r.timer) this.clock.clearInterval(r.timer);
      r.timer = undefined;
    }
  }

  private schedule(r: Running): void {
    r.timer = this.clock.setInterval(() => this.tick(r), r.intervalMs);
  }

  private tick(r: Running): void {
    if (r.busy) {
      this.skippedTicks++;
      return;
    }
    const now = this.clock.now();
    let result: ReturnType<Sensor['read']>;
    try {
      result = r.sensor.read(now);
    } catch (err) {
      this.readFailed(r, err);
      return;
    }
    if (result instanceof Promise) {
      r.busy = true;
      result.then(
        (payload) => {
          r.busy = false;
          this.deliver(r, payload, now);
        },
        (err: unknown) => {
          r.busy = false;
          this.readFailed(r, err);
        },
      );
    } else {
      this.deliver(r, result, now);
    }
  }

  private deliver(r: Running, payload: Payload | undefined, now: number): void {
    if (r.failing) {
      r.failing = false;
      this.logger.info({ sensor: r.sensor.type }, 'sensor reads again');
    }
    if (payload !== undefined && this.started) this.sink(r.sensor.type, payload, now);
  }

  private readFailed(r: Running, err: unknown): void {
    if (!r.failing) this.logger.warn({ sensor: r.sensor.type, err: String(err) }, 'sensor read failed');
    r.failing = true;
  }
}
