/**
 * The latest-state view of a device: the codec of the hash the projection
 * keeps (gateway/projection, shared/redis/scripts/projectState-1.lua). Readers
 * (`ctl device`, the dashboard) decode it here, never by hand.
 *
 * Hash fields:
 *   seq      highest sequence number folded in
 *   time     device time (ms) of that reading
 *   seen     when Redis last received an entry of the device (ms, from the stream id)
 *   r:<type> "<seq> <time> <payload JSON>": the newest reading of that type
 */
import type { Payload } from './envelope.js';
import type { Keys } from './keys.js';
import type { RedisClient } from './redis/connect.js';

export interface Reading {
  readonly seq: number;
  readonly time: number;
  /** The payload, or its raw text when it is not valid JSON. */
  readonly payload: Payload | string;
}

export interface DeviceState {
  readonly deviceId: string;
  /** Highest sequence number folded in. */
  readonly seq: number;
  /** Device time of that reading (ms since the epoch). */
  readonly time: number;
  /** Last seen: when Redis last received one of its entries (ms since the epoch). */
  readonly seen: number;
  /** Newest reading per type. */
  readonly readings: Readonly<Record<string, Reading>>;
}

export const READING_PREFIX = 'r:';

/** Decodes one `r:<type>` field value. */
export function decodeReading(value: string): Reading | undefined {
  const m = /^(\d+) (\d+) ([\s\S]*)$/.exec(value);
  if (!m) return undefined;
  let payload: Payload | string;
  try {
    payload = JSON.parse(m[3]!) as Payload;
  } catch {
    payload = m[3]!;
  }
  return { seq: Number(m[1]), time: Number(m[2]), payload };
}

/** Decodes a state hash (HGETALL); undefined when the device has no state. */
export function decodeDeviceState(deviceId: string, hash: Record<string, string>): DeviceState | undefined {
  if (hash.seq === undefined && hash.seen === undefined) return undefined;
  const readings: Record<string, Reading> = {};
  for (const [field, value] of Object.entries(hash)) {
    if (!field.startsWith(READING_PREFIX)) continue;
    const r = decodeReading(value);
    if (r) readings[field.slice(READING_PREFIX.length)] = r;
  }
  return {
    deviceId,
    seq: Number(hash.seq ?? 0),
    time: Number(hash.time ?? 0),
    seen: Number(hash.seen ?? 0),
    readings,
  };
}

export async function readDeviceState(
  client: RedisClient,
  keys: Keys,
  deviceId: string,
): Promise<DeviceState | undefined> {
  return decodeDeviceState(deviceId, await client.hgetall(keys.deviceState(deviceId)));
}
