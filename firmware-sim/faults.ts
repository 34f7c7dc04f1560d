/**
 * Fault injection: each fault is off at 0 and switched on by its rate.
 *
 *   faults.duplicate     per publish: sent twice with the same seq (idempotent appends refuse the second)
 *   faults.outOfOrder    per reading: held back and sent after the device's next one
 *   faults.malformed     MQTT devices, per publish: a non-JSON payload as well (lands in the rejected stream)
 *   faults.clockSkew     share of devices whose clock is off by +-faults.clockSkewMs
 *   faults.slowCommands  per command: the handler stalls for faults.slowCommandMs
 *   faults.storms        per minute: a share of MQTT connections (and the agents' Redis connection) drop at once
 *   faults.crashes       per minute: a device dies without a goodbye and reboots after faults.crashDowntime
 *
 * Decisions come from one seeded generator, so a run is repeatable.
 */
import { seededRandom } from '../device/index.js';
import type { SimConfig } from './config.js';

export type FaultSettings = Pick<
  SimConfig,
  | 'faults.duplicate'
  | 'faults.outOfOrder'
  | 'faults.malformed'
  | 'faults.clockSkew'
  | 'faults.clockSkewMs'
  | 'faults.slowCommands'
  | 'faults.slowCommandMs'
  | 'faults.storms'
  | 'faults.stormFraction'
  | 'faults.crashes'
  | 'faults.crashDowntime'
  | 'faults.seed'
>;

export interface FaultCounts {
  duplicates: number;
  outOfOrder: number;
  malformed: number;
  slowCommands: number;
  storms: number;
  crashes: number;
}

export class Faults {
  readonly random: () => number;
  readonly counts: FaultCounts = {
    duplicates: 0,
    outOfOrder: 0,
    malformed: 0,
    slowCommands: 0,
    storms: 0,
    crashes: 0,
  };

  constructor(readonly settings: FaultSettings) {
    this.random = seededRandom(settings['faults.seed'] * 7919 + 17);
  }

  private roll(rate: number): boolean {
    return rate > 0 && this.random() < rate;
  }

  duplicate(): boolean {
    const hit = this.roll(this.settings['faults.duplicate']);
    if (hit) this.counts.duplicates++;
    return hit;
  }

  holdBack(): boolean {
    const hit = this.roll(this.settings['faults.outOfOrder']);
    if (hit) this.counts.outOfOrder++;
    return hit;
  }

  malformed(): boolean {
    const hit = this.roll(this.settings['faults.malformed']);
    if (hit) this.counts.malformed++;
    return hit;
  }

  /** Stall of one command handler in ms (0: none). */
  commandStall(): number {
    if (!this.roll(this.settings['faults.slowCommands'])) return 0;
    this.counts.slowCommands++;
    return this.settings['faults.slowCommandMs'];
  }

  /** Clock offset of the device with this index: spread evenly, so the share is exact, not just expected. */
  clockOffset(index: number): number {
    const share = this.settings['faults.clockSkew'];
    if (share <= 0) return 0;
    const k = Math.floor(index * share);
    if (Math.floor((index + 1) * share) === k) return 0;
    return k % 2 === 0 ? this.settings['faults.clockSkewMs'] : -this.settings['faults.clockSkewMs'];
  }

  /** Picks `share` of `n` items at random (at least one when share > 0 and n > 0). */
  pick<T>(items: readonly T[], share: number): T[] {
    if (share <= 0 || items.length === 0) return [];
    const want = Math.max(1, Math.round(items.length * share));
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy.slice(0, want);
  }
}
