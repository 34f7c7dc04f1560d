/**
 * What both kinds of simulated device share: a signal model, a schedule of
 * when each signal is due, a clock that may be skewed, and counters.
 */
import type { DeviceLedger } from './ledger.js';
import type { DeviceModel, Events, PayloadText, Signal } from './profiles.js';

export type DeviceKind = 'agent' | 'mqtt';

export interface DeviceInfo {
  readonly id: string;
  readonly kind: DeviceKind;
}

/** Counters of one device kind; `sent` and `acked` count publishes, duplicates included. */
export class KindStats {
  connected = 0;
  sent = 0;
  acked = 0;
  errors = 0;
  /** Readings given up on the device (local queue or producer buffer full, lost in a crash). */
  dropped = 0;
  commandsReceived = 0;
  commandsAnswered = 0;
  crashes = 0;
  disconnects = 0;

  snapshot(): Readonly<Omit<KindStats, 'snapshot'>> {
    const { snapshot: _s, ...rest } = this;
    return { ...rest };
  }
}

interface Due {
  readonly signal: Signal;
  next: number;
}

export abstract class SimDevice implements DeviceInfo {
  abstract readonly kind: DeviceKind;
  private readonly due: Due[];
  /** The earliest time a signal is due: the fleet's scheduler ticks only devices with something due. */
  nextDue: number;
  /** False while crashed or stopped: nothing is sampled. */
  running = false;
  /** Ticks given up because the process fell more than a few intervals behind. */
  skipped = 0;
  /** Filled by the model during one sample, emptied before the next (one array per device, not per reading). */
  private readonly events: Events = [];

  constructor(
    readonly id: string,
    readonly model: DeviceModel,
    /** Added to the true time for device timestamps (clock skew fault). */
    readonly clockOffset: number,
    firstDue: number,
    random: () => number,
    /** This device's sequence numbers and what became of each. */
    protected readonly seqs: DeviceLedger,
  ) {
    // Every signal starts on a slot of the fastest one, as one firmware main loop samples them: a
    // drone's battery reading falls due with one of its GPS fixes, and the two go out in one
    // socket write (MQTT.js corks a tick's packets) instead of two.
    const fastest = Math.min(...model.signals.map((s) => s.intervalMs));
    const phase = firstDue + Math.floor(random() * fastest);
    this.due = model.signals.map((signal) => ({
      signal,
      next: phase + fastest * Math.floor(random() * Math.max(1, Math.floor(signal.intervalMs / fastest))),
    }));
    this.nextDue = this.earliestDue();
  }

  private earliestDue(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const d of this.due) if (d.next < next) next = d.next;
    return next;
  }

  /** Samples every signal that is due at `now` (true time). */
  tick(now: number): void {
    if (!this.running) return;
    for (const d of this.due) {
      if (d.next > now) continue;
      const interval = d.signal.intervalMs;
      // Far behind (an overloaded process): skip ahead instead of bursting, and count it.
      if (now - d.next > interval * 5) {
        this.skipped += Math.floor((now - d.next) / interval);
        d.next = now;
      }
      while (d.next <= now) {
        this.sample(d.signal.type, now);
        d.next += interval;
      }
    }
    this.nextDue = this.earliestDue();
  }

  private sample(type: string, now: number): void {
    const events = this.events;
    events.length = 0;
    const payload = this.model.read(type, now, events);
    const time = now + this.clockOffset;
    this.publish(type, payload, time);
    for (const [t, p] of events) this.publish(t, p, time);
  }

  /** The sampler interface the command handlers act on (set-interval). */
  setInterval(type: string, intervalMs: number): boolean {
    const d = this.due.find((x) => x.signal.type === type);
    if (!d) return false;
    d.signal.intervalMs = intervalMs;
    this.nextDue = this.earliestDue();
    return true;
  }

  intervalOf(type: string): number | undefined {
    return this.due.find((x) => x.signal.type === type)?.signal.intervalMs;
  }

  get types(): string[] {
    return this.due.map((d) => d.signal.type);
  }

  protected abstract publish(type: string, payload: PayloadText, time: number): void;
}
