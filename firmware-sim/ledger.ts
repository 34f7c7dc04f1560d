/**
 * What the fleet sent, by (device, seq), and the audit that reads the streams
 * back: an acknowledged entry missing from the streams is lost, an entry
 * stored twice is a duplicate. One byte per sequence number, so a 60 s run of
 * 2,000 drones (1.3 M readings) needs about 1.3 MB.
 */
import { FIELD } from '#shared/envelope.js';
import type { Keys } from '#shared/keys.js';
import type { RedisClient } from '#shared/redis/connect.js';

const SENT = 1;
const ACKED = 2;
const DROPPED = 3;

/**
 * One device's part of the ledger. A device keeps it (SeqLedger.register
 * returns it), so a reading costs no lookup by id: nextSeq, acked and dropped
 * run once per message.
 */
export class DeviceLedger {
  state = new Uint8Array(256);
  next: number;
  constructor(
    readonly base: number,
    readonly skewed: boolean,
    readonly kind: string,
  ) {
    this.next = base;
  }

  /** The device's next sequence number, recorded as sent. */
  nextSeq(): number {
    const seq = this.next++;
    this.set(seq, SENT);
    return seq;
  }

  acked(seq: number): void {
    this.set(seq, ACKED);
  }

  dropped(seq: number): void {
    this.set(seq, DROPPED);
  }

  private index(seq: number): number {
    const i = seq - this.base;
    if (i >= this.state.length) {
      const grown = new Uint8Array(Math.max(this.state.length * 2, i + 1));
      grown.set(this.state);
      this.state = grown;
    }
    return i;
  }

  set(seq: number, value: number): void {
    const i = seq - this.base;
    if (i < 0) return;
    // An ack never turns back into "sent" (a duplicate publish of an acked reading).
    const at = this.index(seq);
    if (value === SENT && this.state[at] === ACKED) return;
    this.state[at] = value;
  }
}

export interface AuditReport {
  /** Entries of our devices found in the streams. */
  stored: number;
  /** Readings the devices were told were stored (PUBACK, or the producer's acknowledgement). */
  acked: number;
  /** Acknowledged but not in the streams: must be 0. */
  lost: number;
  /** (device, seq) pairs stored more than once: must be 0. */
  duplicates: number;
  /** Sent but never acknowledged (in flight at a crash or at stop) and not stored. */
  unacked: number;
  /** Dropped on the device (local queue full, producer buffer full): never sent. */
  dropped: number;
  /** Entries stored after an entry of the same device with a higher seq. */
  storedOutOfOrder: number;
  /** Device time -> entry id time (devices with a skewed clock excluded). */
  ingestP50Ms: number;
  ingestP99Ms: number;
  ingestMaxMs: number;
  /** The same by device kind (as registered): where the tail comes from. */
  ingestByKind: Record<string, { p50Ms: number; p99Ms: number; maxMs: number; count: number }>;
}

export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export class SeqLedger {
  private readonly devices = new Map<string, DeviceLedger>();

  /** A device's part of the ledger, for it to keep. */
  register(deviceId: string, base: number, skewed: boolean, kind = 'device'): DeviceLedger {
    const d = new DeviceLedger(base, skewed, kind);
    this.devices.set(deviceId, d);
    return d;
  }

  /** The device's next sequence number, recorded as sent. */
  nextSeq(deviceId: string): number {
    const d = this.devices.get(deviceId);
    if (!d) throw new TypeError(`device ${deviceId} is not registered`);
    return d.nextSeq();
  }

  acked(deviceId: string, seq: number): void {
    this.devices.get(deviceId)?.acked(seq);
  }

  dropped(deviceId: string, seq: number): void {
    this.devices.get(deviceId)?.dropped(seq);
  }

  /** Reads every telemetry partition back and compares it with what was sent. */
  async audit(client: RedisClient, keys: Keys, pageSize = 10_000): Promise<AuditReport> {
    const counts = new Map<string, Uint8Array>();
    const lastSeq = new Map<string, number>();
    const latencies: number[] = [];
    const byKind = new Map<string, number[]>();
    let stored = 0;
    let storedOutOfOrder = 0;
    for (const stream of keys.allTelemetryStreams()) {
      let start = '-';
      for (;;) {
        const page = await client.xrange(stream, start, '+', 'COUNT', pageSize);
        for (const [id, fields] of page) {
          let device: string | undefined;
          let seq = Number.NaN;
          let time = Number.NaN;
          for (let i = 0; i + 1 < fields.length; i += 2) {
            const f = fields[i];
            if (f === FIELD.deviceId) device = fields[i + 1];
            else if (f === FIELD.seq) seq = Number(fields[i + 1]);
            else if (f === FIELD.time) time = Number(fields[i + 1]);
          }
          const d = device === undefined ? undefined : this.devices.get(device);
          if (!d || device === undefined) continue;
          stored++;
          const i = seq - d.base;
          if (i >= 0) {
            let c = counts.get(device);
            if (!c || c.length <= i) {
              const grown = new Uint8Array(Math.max(d.state.length, i + 1));
              if (c) grown.set(c);
              c = grown;
              counts.set(device, c);
            }
            if (c[i]! < 255) c[i]!++;
          }
          const last = lastSeq.get(device) ?? -1;
          if (seq < last) storedOutOfOrder++;
          else lastSeq.set(device, seq);
          if (!d.skewed) {
            const ms = Number(id.slice(0, id.indexOf('-'))) - time;
            latencies.push(ms);
            const k = byKind.get(d.kind);
            if (k) k.push(ms);
            else byKind.set(d.kind, [ms]);
          }
        }
        if (page.length < pageSize) break;
        start = `(${page[page.length - 1]![0]}`;
      }
    }
    let acked = 0;
    let lost = 0;
    let duplicates = 0;
    let unacked = 0;
    let dropped = 0;
    for (const [device, d] of this.devices) {
      const c = counts.get(device);
      const n = Math.max(d.next - d.base, c?.length ?? 0);
      for (let i = 0; i < n; i++) {
        const st = i < d.state.length ? d.state[i]! : 0;
        const times = c && i < c.length ? c[i]! : 0;
        if (times > 1) duplicates += times - 1;
        if (st === ACKED) {
          acked++;
          if (times === 0) lost++;
        } else if (st === SENT && times === 0) unacked++;
        else if (st === DROPPED) dropped++;
      }
    }
    const sorted = Float64Array.from(latencies).sort();
    const ingestByKind: AuditReport['ingestByKind'] = {};
    for (const [kind, list] of byKind) {
      const s = Float64Array.from(list).sort();
      ingestByKind[kind] = {
        p50Ms: quantile(s, 0.5),
        p99Ms: quantile(s, 0.99),
        maxMs: s[s.length - 1]!,
        count: s.length,
      };
    }
    return {
      stored,
      acked,
      lost,
      duplicates,
      unacked,
      dropped,
      storedOutOfOrder,
      ingestP50Ms: quantile(sorted, 0.5),
      ingestP99Ms: quantile(sorted, 0.99),
      ingestMaxMs: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
      ingestByKind,
    };
  }
}
