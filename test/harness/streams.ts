/** Reading telemetry back out of Redis in tests, through the one envelope codec. */
import type { Cluster, Redis } from 'ioredis';
import { decodeEnvelope, type TelemetryEnvelope } from '#shared/envelope.js';
import type { Keys } from '#shared/keys.js';

export interface StoredEntry extends TelemetryEnvelope {
  id: string;
  stream: string;
}

export async function readStream(client: Redis | Cluster, stream: string): Promise<StoredEntry[]> {
  const out: StoredEntry[] = [];
  let start = '-';
  for (;;) {
    const page = await client.xrange(stream, start, '+', 'COUNT', 5000);
    for (const [id, fields] of page) out.push({ id, stream, ...decodeEnvelope(fields) });
    if (page.length < 5000) return out;
    start = `(${page[page.length - 1]![0]}`;
  }
}

export async function readAllTelemetry(client: Redis | Cluster, keys: Keys): Promise<StoredEntry[]> {
  const all = await Promise.all(keys.allTelemetryStreams().map((s) => readStream(client, s)));
  return all.flat();
}

/** Entries in all telemetry partitions, by XLEN: a cheap probe to wait on before one full read. */
export async function countAllTelemetry(client: Redis | Cluster, keys: Keys): Promise<number> {
  const lengths = await Promise.all(keys.allTelemetryStreams().map((s) => client.xlen(s)));
  return lengths.reduce((a, b) => a + b, 0);
}

/** Sequence numbers per device, in stream order. */
export function seqsByDevice(entries: readonly StoredEntry[]): Map<string, number[]> {
  const map = new Map<string, number[]>();
  for (const e of entries) {
    const list = map.get(e.deviceId);
    if (list) list.push(e.seq);
    else map.set(e.deviceId, [e.seq]);
  }
  return map;
}

export async function waitFor<T>(
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
