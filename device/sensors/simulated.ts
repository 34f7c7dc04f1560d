/** Simulated sensors with plausible signals, for demos, tests and load. */
import type { Payload } from '#shared/envelope.js';
import type { Sensor } from './sensor.js';

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Temperature as a bounded random walk around a set point (°C). */
export function temperatureSensor(random: () => number, start = 21): Sensor {
  let value = start;
  return {
    type: 'temperature',
    read: () => {
      value += (random() - 0.5) * 0.4 + (start - value) * 0.02; // drift back toward the set point
      return { c: round(value, 2) };
    },
  };
}

/** Battery discharging from full, with voltage following charge; recharges at 5%. */
export function batterySensor(random: () => number, drainPerReading = 0.05): Sensor {
  let percent = 100 - random() * 20;
  return {
    type: 'battery',
    read: () => {
      percent -= drainPerReading * (0.5 + random());
      if (percent <= 5) percent = 100;
      return { pct: round(percent, 2), v: round(3.3 + (percent / 100) * 0.9, 3) };
    },
  };
}

/**
 * A GPS track: the device flies a loop around a home point at a steady speed,
 * with a little noise, reporting position, altitude, speed and heading.
 */
export function gpsSensor(random: () => number, home = { lat: 52.52, lon: 13.405 }): Sensor {
  const radiusDeg = 0.005 + random() * 0.01;
  let angle = random() * Math.PI * 2;
  const step = 0.002 + random() * 0.002;
  return {
    type: 'gps',
    read: () => {
      angle = (angle + step) % (Math.PI * 2);
      return {
        lat: round(home.lat + radiusDeg * Math.sin(angle) + (random() - 0.5) * 1e-5, 6),
        lon: round(home.lon + radiusDeg * Math.cos(angle) + (random() - 0.5) * 1e-5, 6),
        alt: round(80 + 10 * Math.sin(angle * 3), 1),
        spd: round(12 + random(), 2),
        hdg: round(((angle * 180) / Math.PI + 90) % 360, 1),
      };
    },
  };
}

/** A fixed-size payload at a steady rate, for load tests and benchmarks. */
export function constantSensor(payloadBytes: number): Sensor {
  // {"x":"aaaa..."} is 8 bytes of framing around the filler.
  const payload: Payload = { x: 'a'.repeat(Math.max(0, payloadBytes - 8)) };
  return { type: 'constant', read: () => payload };
}
