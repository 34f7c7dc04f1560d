/**
 * The latest-state view of a device: the codec of its partition's state hash
 * (`iot:state:{p<N>}`, kept by the append script, shared/redis/scripts/lib/foldState.lua).
 * Readers (`ctl device`, the dashboard) decode it here, never by hand.
 *
 * Hash fields (a space is in no device id and no type):
 *   "<deviceId>"         "<seq> <time> <seen> <type> <type> ...": highest sequence number
 *                        folded in, the device time of that reading, when Redis last
 *                        received one of its entries (ms, from the stream id), and the
 *                        types that have a reading
 *   "<deviceId> <type>"  "<seq> <time> <payload JSON>": the newest reading of that type
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

/** Decodes one `<deviceId> <type>` field value. */
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

/** Decodes a device's header field and its reading fields (by type); undefined when it has no state. */
export function decodeDeviceState(
  deviceId: string,
  header: string | null | undefined,
  fields: Readonly<Record<string, string | null | undefined>> = {},
): DeviceState | undefined {
  const m = header ? /^(\d+) (\d+) (\d+)/.exec(header) : null;
  if (!m) return undefined;
  const readings: Record<string, Reading> = {};
  for (const [type, value] of Object.entries(fields)) {
    const r = value ? decodeReading(value) : undefined;
    if (r) readings[type] = r;
  }
  return { deviceId, seq: Number(m[1]), time: Number(m[2]), seen: Number(m[3]), readings };
}

/** The types a header names. */
function headerTypes(header: string | null | undefined): string[] {
  return header ? header.split(' ').slice(3) : [];
}

/** The states of many devices: one HMGET of headers per partition, then one of their readings per device. */
export async function readDeviceStates(
  client: RedisClient,
  keys: Keys,
  deviceIds: readonly string[],
): Promise<Array<DeviceState | undefined>> {
  const states = new Array<DeviceState | undefined>(deviceIds.length);
  const groups = keys.byPartition(deviceIds.keys(), (i) => deviceIds[i]!);
  await Promise.all(
    [...groups].map(async ([p, indexes]) => {
      const key = keys.partitionState(p);
      const headers = await client.hmget(key, ...indexes.map((i) => deviceIds[i]!));
      await Promise.all(
        indexes.map(async (i, j) => {
          const id = deviceIds[i]!;
          const types = headerTypes(headers[j]);
          const values = types.length ? await client.hmget(key, ...types.map((t) => `${id} ${t}`)) : [];
          states[i] = decodeDeviceState(
            id,
            headers[j],
            Object.fromEntries(types.map((t, k) => [t, values[k]])),
          );
        }),
      );
    }),
  );
  return states;
}

export async function readDeviceState(
  client: RedisClient,
  keys: Keys,
  deviceId: string,
): Promise<DeviceState | undefined> {
  return (await readDeviceStates(client, keys, [deviceId]))[0];
}
