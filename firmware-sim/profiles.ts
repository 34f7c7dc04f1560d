/**
 * Signal profiles: what one simulated device measures and how often.
 *
 *   drone        GPS at 10 Hz along delivery routes (depot -> customer -> depot),
 *                battery at 1 Hz discharging in flight and charging at the depot,
 *                and a `delivery` status event at every phase change
 *   environment  temperature and humidity at 0.1-1 Hz (a daily cycle plus noise)
 *   constant     one fixed-size reading per interval, for load tests
 *
 * Models are pure functions of (seeded random, time): the same seed and the
 * same clock give the same readings. A reading is the JSON text of its payload
 * object, written by a template: the payloads have a fixed shape, and a fleet
 * samples ~22,000 a second, so neither an object per reading nor a
 * JSON.stringify of it is worth its cost (the MQTT body and the agent's entry
 * are both built from this text).
 */
import type { ProfileName, SimConfig } from './config.js';

export interface Signal {
  readonly type: string;
  intervalMs: number;
}

/** JSON text of a payload object, e.g. `{"pct":81.25,"v":4.031,"charging":false}`. */
export type PayloadText = string;

/** Extra readings a sample may cause (a phase change of a delivery). */
export type Events = Array<[type: string, payload: PayloadText]>;

export interface DeviceModel {
  readonly signals: Signal[];
  read(type: string, now: number, events: Events): PayloadText;
}

export type ProfileSettings = Pick<
  SimConfig,
  | 'profile.drone.gpsInterval'
  | 'profile.drone.batteryInterval'
  | 'profile.drone.speed'
  | 'profile.environment.interval'
  | 'profile.constant.interval'
  | 'profile.constant.payloadBytes'
>;

const POWERS_OF_TEN = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000];
const ZEROS = ['', '0', '00', '000', '0000', '00000', '000000'];

/**
 * `x` rounded to `digits` decimals (0-6), as the text JSON.stringify writes for
 * Math.round(x * 10^digits) / 10^digits. Written from integers: turning a
 * double into its shortest text costs about twice as much, and a GPS fix has
 * five of them. (A rounded value has few significant digits, so its shortest
 * text is exactly these digits without trailing zeros; the unit test compares
 * every reading with JSON.stringify.)
 */
export function decimal(x: number, digits: number): string {
  const p = POWERS_OF_TEN[digits]!;
  let k = Math.round(x * p);
  let sign = '';
  if (k < 0) {
    sign = '-';
    k = -k;
  }
  const whole = Math.floor(k / p);
  let frac = k - whole * p;
  if (frac === 0) return sign + whole;
  let d = digits;
  while (frac % 10 === 0) {
    frac /= 10;
    d--;
  }
  const f = `${frac}`;
  return `${sign}${whole}.${ZEROS[d - f.length]}${f}`;
}
const M_PER_DEG_LAT = 111_320;

type Phase = 'loading' | 'outbound' | 'dropoff' | 'return';

/** A delivery drone: flies depot -> customer -> depot, over and over. */
export function droneModel(random: () => number, s: ProfileSettings, start: number): DeviceModel {
  const depot = { lat: 52.52 + (random() - 0.5) * 0.05, lon: 13.405 + (random() - 0.5) * 0.08 };
  const cosLat = Math.cos((depot.lat * Math.PI) / 180);
  const speed = s['profile.drone.speed'] * (0.8 + random() * 0.4);
  let phase: Phase = 'loading';
  let phaseUntil = start + 2000 + random() * 8000;
  let order = 0;
  let target = { ...depot };
  let from = { ...depot };
  let legStart = start;
  let legMs = 0;
  let battery = 60 + random() * 40;
  let batteryAt = start;

  const newTarget = () => {
    const distance = 800 + random() * 2500; // metres
    const bearing = random() * Math.PI * 2;
    return {
      lat: depot.lat + (distance * Math.cos(bearing)) / M_PER_DEG_LAT,
      lon: depot.lon + (distance * Math.sin(bearing)) / (M_PER_DEG_LAT * cosLat),
    };
  };
  const legDuration = (a: { lat: number; lon: number }, b: { lat: number; lon: number }) => {
    const dy = (b.lat - a.lat) * M_PER_DEG_LAT;
    const dx = (b.lon - a.lon) * M_PER_DEG_LAT * cosLat;
    return (Math.hypot(dx, dy) / speed) * 1000;
  };
  const startLeg = (now: number, to: { lat: number; lon: number }) => {
    from = position(now);
    target = to;
    legStart = now;
    legMs = legDuration(from, to);
    phaseUntil = now + legMs;
  };
  const position = (now: number) => {
    if (phase !== 'outbound' && phase !== 'return') return phase === 'dropoff' ? target : depot;
    const f = legMs <= 0 ? 1 : Math.min(1, (now - legStart) / legMs);
    return { lat: from.lat + (target.lat - from.lat) * f, lon: from.lon + (target.lon - from.lon) * f };
  };
  /** Moves the state machine up to `now`, reporting each phase change. */
  const advance = (now: number, events: Events) => {
    while (now >= phaseUntil) {
      const at = phaseUntil;
      if (phase === 'loading') {
        order++;
        phase = 'outbound';
        startLeg(at, newTarget());
        events.push(['delivery', `{"status":"departed","order":${order}}`]);
      } else if (phase === 'outbound') {
        phase = 'dropoff';
        phaseUntil = at + 3000 + random() * 4000;
        events.push(['delivery', `{"status":"delivered","order":${order}}`]);
      } else if (phase === 'dropoff') {
        phase = 'return';
        startLeg(at, depot);
        events.push(['delivery', `{"status":"returning","order":${order}}`]);
      } else {
        phase = 'loading';
        phaseUntil = at + 5000 + random() * 20_000;
        events.push(['delivery', `{"status":"landed","order":${order}}`]);
      }
    }
  };
  const flying = () => phase !== 'loading';

  return {
    signals: [
      { type: 'gps', intervalMs: s['profile.drone.gpsInterval'] },
      { type: 'battery', intervalMs: s['profile.drone.batteryInterval'] },
    ],
    read(type, now, events) {
      advance(now, events);
      if (type === 'battery') {
        const dt = Math.max(0, now - batteryAt) / 1000;
        batteryAt = now;
        // Flight drains ~0.08 %/s; at the depot it charges ~0.5 %/s up to full.
        battery = flying() ? battery - dt * 0.08 * (0.7 + random() * 0.6) : Math.min(100, battery + dt * 0.5);
        if (battery < 5) battery = 5; // lands on reserve; the next depot stop recharges it
        return `{"pct":${decimal(battery, 2)},"v":${decimal(3.3 + (battery / 100) * 0.9, 3)},"charging":${!flying()}}`;
      }
      const p = position(now);
      const moving = phase === 'outbound' || phase === 'return';
      const hdg = moving
        ? (Math.atan2((target.lon - from.lon) * cosLat, target.lat - from.lat) * 180) / Math.PI
        : 0;
      // The order random() is drawn in is the order the fields were drawn in before (same readings per seed).
      const lat = decimal(p.lat + (random() - 0.5) * 2e-6, 6);
      const lon = decimal(p.lon + (random() - 0.5) * 2e-6, 6);
      const alt = decimal(phase === 'loading' ? 0 : phase === 'dropoff' ? 15 : 80 + random(), 1);
      return `{"lat":${lat},"lon":${lon},"alt":${alt},"spd":${decimal(moving ? speed : 0, 2)},"hdg":${decimal((hdg + 360) % 360, 1)},"ph":"${phase}"}`;
    },
  };
}

/** An environmental sensor: temperature and humidity following a daily cycle. */
export function environmentModel(random: () => number, s: ProfileSettings): DeviceModel {
  const base = 18 + random() * 8;
  const interval = s['profile.environment.interval'];
  let drift = 0;
  const day = (now: number) => Math.sin(((now % 86_400_000) / 86_400_000) * Math.PI * 2 - Math.PI / 2);
  return {
    signals: [
      { type: 'temperature', intervalMs: interval },
      { type: 'humidity', intervalMs: interval },
    ],
    read(type, now) {
      drift = drift * 0.95 + (random() - 0.5) * 0.3;
      const c = base + 4 * day(now) + drift;
      if (type === 'temperature') return `{"c":${decimal(c, 2)}}`;
      return `{"rh":${decimal(Math.min(100, Math.max(5, 55 - 2.5 * (c - base) + drift * 3)), 1)}}`;
    },
  };
}

/** A fixed-size payload at a steady rate. */
export function constantModel(s: ProfileSettings): DeviceModel {
  // {"x":"aaaa..."} is 8 bytes of framing around the filler.
  const payload = `{"x":"${'a'.repeat(Math.max(0, s['profile.constant.payloadBytes'] - 8))}"}`;
  return {
    signals: [{ type: 'constant', intervalMs: s['profile.constant.interval'] }],
    read: () => payload,
  };
}

export function createModel(
  profile: ProfileName,
  random: () => number,
  settings: ProfileSettings,
  start: number,
): DeviceModel {
  switch (profile) {
    case 'drone':
      return droneModel(random, settings, start);
    case 'environment':
      return environmentModel(random, settings);
    case 'constant':
      return constantModel(settings);
  }
}

/** Messages per second one device of a profile offers (without faults or events). */
export function ratePerDevice(profile: ProfileName, settings: ProfileSettings): number {
  const r = (ms: number) => 1000 / ms;
  switch (profile) {
    case 'drone':
      return r(settings['profile.drone.gpsInterval']) + r(settings['profile.drone.batteryInterval']);
    case 'environment':
      return 2 * r(settings['profile.environment.interval']);
    case 'constant':
      return r(settings['profile.constant.interval']);
  }
}
