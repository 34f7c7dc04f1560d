/**
 * The fleet as the dashboard shows it: every known device with its latest
 * readings and last-seen time, read from what the system already keeps:
 *
 * - device ids: the agents' registry (`iot:devices`), the MQTT devices
 *   (`iot:mqtt:devices`), the gateways' `iot:lastseen` hash, and the
 *   devices in the newest entries of each partition (agents that publish
 *   without registering);
 * - latest state: the projection's per-device hash (shared/state.ts), the
 *   fleet's consistent view, ordered by sequence number;
 * - last seen: the later of the projection's `seen` and `iot:lastseen`.
 *
 * When no projection runs (or it has not reached a device yet), a device's
 * readings are taken from the tail of its telemetry partition (the newest
 * entries, by sequence number), marked `source: "tail"`: a best-effort
 * preview, bounded by `TAIL_ENTRIES` per partition.
 */
import { decodeEnvelope, type Payload } from '#shared/envelope.js';
import type { Keys } from '#shared/keys.js';
import type { RedisClient } from '#shared/redis/connect.js';
import { readDeviceStates } from '#shared/state.js';

/** Entries read from the end of each partition for the tail fallback. */
export const TAIL_ENTRIES = 200;
/** A payload longer than this (as JSON) is cut, so a response stays small whatever devices send. */
export const MAX_PAYLOAD_CHARS = 512;

export interface ReadingView {
  readonly seq: number;
  readonly time: number;
  readonly payload: Payload | string;
}

export interface DeviceView {
  readonly id: string;
  readonly kind: 'agent' | 'mqtt';
  /** ms since the epoch; null when nothing has been seen from it. */
  readonly lastSeen: number | null;
  /** Highest sequence number known. */
  readonly seq: number | null;
  readonly readings: Record<string, ReadingView>;
  /** Where the readings come from. */
  readonly source: 'projection' | 'tail' | 'none';
}

export interface FleetView {
  /** Devices known in total (before the filter and the limit). */
  readonly total: number;
  /** Devices matching the filter. */
  readonly matching: number;
  readonly offset: number;
  readonly devices: DeviceView[];
}

export interface FleetQuery {
  readonly offset: number;
  readonly limit: number;
  /** Substring a device id must contain. */
  readonly filter?: string;
}

function bounded(payload: Payload | string): Payload | string {
  const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  if (text.length <= MAX_PAYLOAD_CHARS) return payload;
  return `${text.slice(0, MAX_PAYLOAD_CHARS)}…`;
}

interface Tail {
  seen: number;
  seq: number;
  readings: Map<string, ReadingView>;
}

export class FleetReader {
  private tailCache: { at: number; tails: Promise<Map<string, Tail>> } | undefined;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly now: () => number,
  ) {}

  async read(query: FleetQuery): Promise<FleetView> {
    const { client, keys } = this;
    const [agents, mqtt, seenIds, tails] = await Promise.all([
      client.smembers(keys.fleet()),
      client.smembers(keys.mqttDevices()),
      client.hkeys(keys.lastSeen()),
      this.tails(),
    ]);
    const mqttSet = new Set(mqtt);
    // Devices that publish without registering (no command worker) are found in the partitions' tails.
    const all = [...new Set([...agents, ...mqtt, ...seenIds, ...tails.keys()])].sort();
    const matching = query.filter ? all.filter((id) => id.includes(query.filter ?? '')) : all;
    const page = matching.slice(query.offset, query.offset + query.limit);
    if (page.length === 0)
      return { total: all.length, matching: matching.length, offset: query.offset, devices: [] };

    const [states, seen] = await Promise.all([
      readDeviceStates(client, keys, page),
      client.hmget(keys.lastSeen(), ...page),
    ]);
    const devices: DeviceView[] = [];
    for (const [i, id] of page.entries()) {
      const state = states[i];
      const gatewaySeen = seen[i] ? Number(seen[i]) : 0;
      const kind = mqttSet.has(id) ? 'mqtt' : 'agent';
      if (state && Object.keys(state.readings).length > 0) {
        const readings: Record<string, ReadingView> = {};
        for (const [type, r] of Object.entries(state.readings)) {
          readings[type] = { seq: r.seq, time: r.time, payload: bounded(r.payload) };
        }
        const last = Math.max(state.seen, gatewaySeen);
        devices.push({ id, kind, lastSeen: last || null, seq: state.seq, readings, source: 'projection' });
        continue;
      }
      const tail = tails.get(id);
      const last = Math.max(tail?.seen ?? 0, gatewaySeen);
      devices.push({
        id,
        kind,
        lastSeen: last || null,
        seq: tail ? tail.seq : null,
        readings: tail ? Object.fromEntries(tail.readings) : {},
        source: tail ? 'tail' : 'none',
      });
    }
    return { total: all.length, matching: matching.length, offset: query.offset, devices };
  }

  /** Newest readings per device from the end of every partition; one read a second, shared by concurrent requests. */
  private tails(): Promise<Map<string, Tail>> {
    const now = this.now();
    if (this.tailCache && now - this.tailCache.at < 1000) return this.tailCache.tails;
    const tails = this.readTails();
    this.tailCache = { at: now, tails };
    tails.catch(() => {
      this.tailCache = undefined;
    });
    return tails;
  }

  private async readTails(): Promise<Map<string, Tail>> {
    const replies = await Promise.all(
      this.keys.allTelemetryStreams().map((k) => this.client.xrevrange(k, '+', '-', 'COUNT', TAIL_ENTRIES)),
    );
    const tails = new Map<string, Tail>();
    for (const entries of replies) {
      for (const [id, fields] of entries) {
        let e: ReturnType<typeof decodeEnvelope>;
        try {
          e = decodeEnvelope(fields);
        } catch {
          continue; // not a reading (bad input is kept in the rejected stream, not here)
        }
        const arrival = Number(id.slice(0, id.indexOf('-')));
        let tail = tails.get(e.deviceId);
        if (!tail) {
          tail = { seen: 0, seq: 0, readings: new Map() };
          tails.set(e.deviceId, tail);
        }
        tail.seen = Math.max(tail.seen, arrival);
        tail.seq = Math.max(tail.seq, e.seq);
        const old = tail.readings.get(e.type);
        if (!old || old.seq < e.seq) {
          tail.readings.set(e.type, { seq: e.seq, time: e.time, payload: bounded(e.payload) });
        }
      }
    }
    return tails;
  }
}
