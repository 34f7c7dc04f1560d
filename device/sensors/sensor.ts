/** A sensor yields one reading per sample; the sampler decides when. */
import type { Payload } from '#shared/envelope.js';

export interface Sensor {
  /** Reading type written to the envelope, e.g. "temperature". */
  readonly type: string;
  /**
   * One reading, or undefined when the source has nothing to say (for example
   * no thermal zone on this machine).
   */
  read(now: number): Payload | undefined | Promise<Payload | undefined>;
}

/** Seedable pseudo-random numbers (mulberry32), so simulations are repeatable. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
