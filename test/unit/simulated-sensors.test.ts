/** The simulated sensors give plausible signals: bounded, moving, and the same for the same seed. */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../device/sensors/sensor.js';
import {
  batterySensor,
  constantSensor,
  gpsSensor,
  temperatureSensor,
} from '../../device/sensors/simulated.js';

type Reading = Record<string, number>;
const readings = (read: () => unknown, n: number) => Array.from({ length: n }, () => read() as Reading);

describe('simulated sensors', () => {
  it('temperature is a random walk that stays near its set point', () => {
    const sensor = temperatureSensor(seededRandom(7), 21);
    const walk = readings(() => sensor.read(0), 10_000).map((r) => r.c!);
    expect(Math.min(...walk)).toBeGreaterThan(16);
    expect(Math.max(...walk)).toBeLessThan(26);
    // It moves, in small steps (a walk, not noise).
    expect(new Set(walk).size).toBeGreaterThan(100);
    for (let i = 1; i < walk.length; i++) expect(Math.abs(walk[i]! - walk[i - 1]!)).toBeLessThan(0.5);
  });

  it('battery discharges, voltage follows charge, and it recharges at 5 %', () => {
    const sensor = batterySensor(seededRandom(3), 1);
    const series = readings(() => sensor.read(0), 300);
    let recharges = 0;
    for (let i = 1; i < series.length; i++) {
      const [prev, cur] = [series[i - 1]!, series[i]!];
      if (cur.pct! > prev.pct!) {
        recharges++;
        expect(prev.pct).toBeLessThan(7);
        expect(cur.pct).toBe(100);
      } else expect(cur.pct!).toBeLessThan(prev.pct!);
      expect(cur.v).toBeCloseTo(3.3 + (cur.pct! / 100) * 0.9, 2);
    }
    expect(recharges).toBeGreaterThan(0);
  });

  it('GPS flies a loop around home: close to it, always moving, heading in range', () => {
    const home = { lat: 48.1, lon: 11.6 };
    const sensor = gpsSensor(seededRandom(5), home);
    const track = readings(() => sensor.read(0), 5_000);
    for (const p of track) {
      expect(Math.hypot(p.lat! - home.lat, p.lon! - home.lon)).toBeLessThan(0.016);
      expect(p.hdg).toBeGreaterThanOrEqual(0);
      expect(p.hdg).toBeLessThan(360);
      expect(p.spd).toBeGreaterThan(11);
    }
    expect(new Set(track.map((p) => `${p.lat},${p.lon}`)).size).toBeGreaterThan(4_900);
  });

  it('the same seed gives the same signal', () => {
    const a = gpsSensor(seededRandom(9));
    const b = gpsSensor(seededRandom(9));
    expect(readings(() => a.read(0), 50)).toEqual(readings(() => b.read(0), 50));
  });

  it('the constant sensor has the configured payload size', () => {
    expect(JSON.stringify(constantSensor(120).read(0))).toHaveLength(120);
  });
});
