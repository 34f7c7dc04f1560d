/** firmware-sim's pure parts: signal profiles, fault decisions, rates. */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../device/sensors/sensor.js';
import { Faults } from '../../firmware-sim/faults.js';
import { fleetConfig } from '../../firmware-sim/fleet.js';
import { createModel, decimal, type Events, ratePerDevice } from '../../firmware-sim/profiles.js';

const config = fleetConfig();

/**
 * A model's reading is JSON text of an object, written by a template: it must parse, and be
 * exactly what JSON.stringify writes for it (no stray spaces, the same number formatting).
 */
function reading(text: string): Record<string, unknown> {
  const parsed = JSON.parse(text) as unknown;
  expect(parsed).toBeTypeOf('object');
  expect(JSON.stringify(parsed)).toBe(text);
  return parsed as Record<string, unknown>;
}

describe('profiles', () => {
  it('drone: GPS at 10 Hz and battery at 1 Hz (22,000 msg/s for 2,000 drones)', () => {
    const m = createModel('drone', seededRandom(1), config, 0);
    expect(m.signals.map((s) => [s.type, s.intervalMs])).toEqual([
      ['gps', 100],
      ['battery', 1000],
    ]);
    expect(2000 * ratePerDevice('drone', config)).toBe(22_000);
  });

  it('drone: flies delivery routes (departed, delivered, returning, landed), moving while in flight, battery draining', () => {
    const m = createModel('drone', seededRandom(7), config, 0);
    const events: Events = [];
    const positions: Array<{ lat: number; lon: number; ph: string }> = [];
    const battery: number[] = [];
    for (let t = 0; t <= 30 * 60_000; t += 100) {
      positions.push(reading(m.read('gps', t, events)) as { lat: number; lon: number; ph: string });
      if (t % 1000 === 0) battery.push((reading(m.read('battery', t, events)) as { pct: number }).pct);
    }
    const statuses = events.map(([type, p]) => `${type}:${(reading(p) as { status: string }).status}`);
    expect(statuses.slice(0, 4)).toEqual([
      'delivery:departed',
      'delivery:delivered',
      'delivery:returning',
      'delivery:landed',
    ]);
    // Consecutive fixes in flight are a few metres apart (15 m/s at 10 Hz), never a jump.
    for (let i = 1; i < positions.length; i++) {
      const a = positions[i - 1]!;
      const b = positions[i]!;
      const metres = Math.hypot((b.lat - a.lat) * 111_320, (b.lon - a.lon) * 111_320 * 0.61);
      expect(metres).toBeLessThan(5);
    }
    expect(new Set(positions.map((p) => p.ph))).toEqual(
      new Set(['loading', 'outbound', 'dropoff', 'return']),
    );
    expect(Math.min(...battery)).toBeLessThan(battery[0]!);
    for (const pct of battery) expect(pct).toBeGreaterThanOrEqual(5);
  });

  it('environment: temperature and humidity at 0.1-1 Hz, plausible values', () => {
    const m = createModel('environment', seededRandom(3), config, 0);
    for (const s of m.signals) {
      expect(s.intervalMs).toBeGreaterThanOrEqual(1000);
      expect(s.intervalMs).toBeLessThanOrEqual(10_000);
    }
    for (let t = 0; t < 86_400_000; t += 600_000) {
      const c = (reading(m.read('temperature', t, [])) as { c: number }).c;
      const rh = (reading(m.read('humidity', t, [])) as { rh: number }).rh;
      expect(c).toBeGreaterThan(5);
      expect(c).toBeLessThan(40);
      expect(rh).toBeGreaterThanOrEqual(5);
      expect(rh).toBeLessThanOrEqual(100);
    }
  });

  it('constant: the configured payload size', () => {
    const m = createModel(
      'constant',
      seededRandom(1),
      fleetConfig({ 'profile.constant.payloadBytes': 200 }),
      0,
    );
    expect(reading(m.read('constant', 0, []))).toBeTypeOf('object');
    expect(m.read('constant', 0, [])).toHaveLength(200);
  });
});

describe('decimal', () => {
  it('writes what JSON.stringify writes for the rounded number', () => {
    const random = seededRandom(11);
    const values = [0, -0, 1, -1, 0.5, -0.5, 1e-7, -1e-7, 99.995, 52.5200001, 13.404954, 359.96, 100, 5];
    for (let i = 0; i < 20_000; i++) values.push((random() - 0.5) * 10 ** Math.floor(random() * 6));
    for (const x of values)
      for (const digits of [0, 1, 2, 3, 6]) {
        const p = 10 ** digits;
        expect(decimal(x, digits)).toBe(JSON.stringify(Math.round(x * p) / p));
      }
  });
});

describe('faults', () => {
  it('are off at rate 0', () => {
    const f = new Faults(config);
    for (let i = 0; i < 1000; i++) {
      expect(f.duplicate() || f.holdBack() || f.malformed() || f.commandStall() > 0).toBe(false);
      expect(f.clockOffset(i)).toBe(0);
    }
  });

  it('hit at about their rate, repeatably for a seed', () => {
    const a = new Faults(fleetConfig({ 'faults.duplicate': 0.1 }));
    const b = new Faults(fleetConfig({ 'faults.duplicate': 0.1 }));
    const runA = Array.from({ length: 10_000 }, () => a.duplicate());
    const runB = Array.from({ length: 10_000 }, () => b.duplicate());
    expect(runA).toEqual(runB);
    const hits = runA.filter(Boolean).length;
    expect(hits).toBeGreaterThan(800);
    expect(hits).toBeLessThan(1200);
    expect(a.counts.duplicates).toBe(hits);
  });

  it('clock skew hits exactly its share of devices, half ahead and half behind', () => {
    const f = new Faults(fleetConfig({ 'faults.clockSkew': 0.25, 'faults.clockSkewMs': 1000 }));
    const offsets = Array.from({ length: 100 }, (_, i) => f.clockOffset(i));
    expect(offsets.filter((o) => o !== 0)).toHaveLength(25);
    expect(offsets.filter((o) => o > 0).length).toBeGreaterThanOrEqual(12);
    expect(offsets.filter((o) => o < 0).length).toBeGreaterThanOrEqual(12);
  });
});
