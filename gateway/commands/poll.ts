/**
 * The fallback poll: reads every reachable device's command stream once per
 * cycle, in case a doorbell was missed (doorbell.ts). It is paced: each step
 * (every POLL_STEP_MS) reads the next slice of the cycle's devices, so a
 * cycle of 1,000 devices is ~1,000 small reads spread over the cycle instead
 * of one burst that stalls the event loop and Redis at once (the PUBACKs of
 * telemetry wait behind it).
 *
 * The cycle is `pollIntervalMs` while the doorbell is off or not listening
 * (its connection failed: rings may be missed), and `doorbellPollIntervalMs`
 * while it listens: then a command is missed only when its ring was trimmed
 * unread or never written (a Cluster sender that failed between the two
 * writes), and the poll is only a backstop. At 1,000 connected devices the
 * old 2 s cycle cost Redis ~500 XREADGROUP/s (~120 µs each) and the gateway
 * their replies, for nothing while the doorbell works.
 */
import type { Clock } from '#shared/clock.js';
import type { Logger } from '#shared/log.js';

/** How often a slice of the cycle's devices is read. */
export const POLL_STEP_MS = 100;

export interface PollDeps {
  clock: Clock;
  logger: Logger;
  /** The devices to read this cycle (broker mode: connected; bridge mode: every MQTT device). */
  devices(): Iterable<string> | Promise<Iterable<string>>;
  read(deviceId: string): Promise<void>;
  /** The cycle's length now (it depends on whether the doorbell listens). */
  cycleMs(): number;
}

export class FallbackPoll {
  private timer: NodeJS.Timeout | undefined;
  private cycle: string[] = [];
  private next = 0;
  private cycleStarted = 0;
  private stepping = false;
  private running = false;

  constructor(private readonly deps: PollDeps) {}

  /** Starts with a full cycle at once: what was queued before this gateway started is found now. */
  start(): void {
    this.running = true;
    void this.all();
    this.schedule();
  }

  stop(): void {
    this.running = false;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Reads every device now (start, and the first cycle). */
  private async all(): Promise<void> {
    this.stepping = true;
    try {
      const devices = [...(await this.deps.devices())];
      await Promise.all(devices.map((d) => this.deps.read(d)));
    } catch (err) {
      this.deps.logger.warn({ error: (err as Error).message }, 'command poll failed; retrying');
    } finally {
      this.stepping = false;
      this.cycle = [];
      this.next = 0;
      this.cycleStarted = this.deps.clock.now();
    }
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = this.deps.clock.setTimeout(
      () => {
        this.timer = undefined;
        void this.step().finally(() => this.schedule());
      },
      Math.min(POLL_STEP_MS, this.deps.cycleMs()),
    );
  }

  /** Reads the devices of this cycle that are due by now; a new cycle takes the device list again. */
  private async step(): Promise<void> {
    if (this.stepping || !this.running) return;
    this.stepping = true;
    try {
      const { clock } = this.deps;
      const cycleMs = this.deps.cycleMs();
      let elapsed = clock.now() - this.cycleStarted;
      if (this.next >= this.cycle.length && elapsed >= cycleMs) {
        this.cycle = [...(await this.deps.devices())];
        this.next = 0;
        this.cycleStarted = clock.now();
        elapsed = 0;
      }
      // The share of the cycle gone by, plus one step: the last slice is read before the cycle ends.
      const due = Math.min(
        this.cycle.length,
        Math.ceil((this.cycle.length * (elapsed + POLL_STEP_MS)) / Math.max(cycleMs, 1)),
      );
      const slice = this.cycle.slice(this.next, due);
      this.next = Math.max(this.next, due);
      await Promise.all(slice.map((d) => this.deps.read(d)));
    } catch (err) {
      this.deps.logger.warn({ error: (err as Error).message }, 'command poll failed; retrying');
    } finally {
      this.stepping = false;
    }
  }
}
