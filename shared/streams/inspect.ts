/**
 * Read-only inspection of streams and their consumer groups, for `ctl streams`
 * and the dashboard: length, memory, and per group the lag (entries not yet
 * delivered), the pending count (delivered, not acknowledged) and the age of
 * the oldest pending entry. Retention computes the same figures inside its
 * trim script (trimStream-1.lua), atomically with the trim.
 *
 * Redis 7.0+: XINFO GROUPS reports `entries-read` and `lag`; `lag` is NULL
 * when Redis cannot tell (after deletions inside the group's unread range),
 * which is reported here as `null`.
 */
import { Cluster, type Redis } from 'ioredis';
import type { Keys } from '../keys.js';
import type { RedisClient } from '../redis/connect.js';

/**
 * The stream families retention manages; each has its own policy. `commands`
 * is every device's command stream (`iot:{<deviceId>}:commands`): one stream
 * per device, found by SCAN (commandStreamPattern), not listed by familyStreams.
 */
export const STREAM_FAMILIES = [
  'telemetry',
  'results',
  'presence',
  'rejected',
  'deadletter',
  'commands',
] as const;
export type StreamFamily = (typeof STREAM_FAMILIES)[number];

/** SCAN pattern of every device's command stream (device ids cannot contain braces: shared/keys.ts). */
export function commandStreamPattern(keys: Keys): string {
  return keys.commands('*');
}

export interface FamilyStream {
  readonly family: StreamFamily;
  readonly key: string;
}

/** Every stream of the fixed families, telemetry partitions first (command streams: StreamScanner). */
export function familyStreams(keys: Keys): FamilyStream[] {
  return [
    ...keys.allTelemetryStreams().map((key) => ({ family: 'telemetry' as const, key })),
    { family: 'results', key: keys.results() },
    { family: 'presence', key: keys.presence() },
    { family: 'rejected', key: keys.rejected() },
    { family: 'deadletter', key: keys.deadLetters() },
  ];
}

export interface GroupInfo {
  readonly name: string;
  readonly consumers: number;
  /** Delivered but not yet acknowledged. */
  readonly pending: number;
  /** Not yet delivered; null when Redis cannot tell. */
  readonly lag: number | null;
  readonly lastDeliveredId: string;
  readonly oldestPendingId: string | null;
  /** Age of the oldest pending entry (now minus its id's time), ms. */
  readonly oldestPendingAgeMs: number | null;
}

export interface StreamInfo {
  readonly key: string;
  readonly exists: boolean;
  readonly length: number;
  /** MEMORY USAGE (sampled), bytes. */
  readonly memoryBytes: number;
  readonly firstId: string | null;
  readonly lastId: string | null;
  readonly groups: GroupInfo[];
}

/** Milliseconds part of a stream id. */
export function idTime(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}

/** Flat [k1, v1, k2, v2] replies of XINFO into a map. */
export function pairs(reply: unknown): Map<string, unknown> {
  const map = new Map<string, unknown>();
  if (!Array.isArray(reply)) return map;
  for (let i = 0; i + 1 < reply.length; i += 2) map.set(String(reply[i]), reply[i + 1]);
  return map;
}

/** A number from a Redis reply field, or null when absent or not numeric (e.g. XINFO lag). */
export function num(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

/** Server time in ms (ages are measured on the clock that stamped the ids). */
export async function serverTime(client: RedisClient): Promise<number> {
  const [s, us] = (await client.time()) as [string | number, string | number];
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

export async function inspectStream(
  client: RedisClient,
  key: string,
  now: number,
  memorySamples = 5,
): Promise<StreamInfo> {
  const length = await client.xlen(key);
  const type = length > 0 ? 'stream' : await client.type(key);
  if (type !== 'stream') {
    return { key, exists: false, length: 0, memoryBytes: 0, firstId: null, lastId: null, groups: [] };
  }
  const [memory, first, last, rawGroups] = await Promise.all([
    client.memory('USAGE', key, 'SAMPLES', memorySamples),
    client.xrange(key, '-', '+', 'COUNT', 1),
    client.xrevrange(key, '+', '-', 'COUNT', 1),
    client.xinfo('GROUPS', key) as Promise<unknown[]>,
  ]);
  const groups = await Promise.all(
    rawGroups.map(async (raw): Promise<GroupInfo> => {
      const g = pairs(raw);
      const name = String(g.get('name'));
      const pending = num(g.get('pending')) ?? 0;
      let oldestPendingId: string | null = null;
      if (pending > 0) {
        const summary = (await client.xpending(key, name)) as unknown[];
        oldestPendingId = typeof summary[1] === 'string' ? summary[1] : null;
      }
      return {
        name,
        consumers: num(g.get('consumers')) ?? 0,
        pending,
        lag: num(g.get('lag')),
        lastDeliveredId: String(g.get('last-delivered-id')),
        oldestPendingId,
        oldestPendingAgeMs: oldestPendingId ? Math.max(0, now - idTime(oldestPendingId)) : null,
      };
    }),
  );
  return {
    key,
    exists: true,
    length,
    memoryBytes: Number(memory ?? 0),
    firstId: first[0]?.[0] ?? null,
    lastId: last[0]?.[0] ?? null,
    groups,
  };
}

/** The nodes that hold keys: every master of a cluster, or the one server. */
function keyNodes(client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client];
}

/**
 * Keys of streams matching a pattern (e.g. every device's command stream),
 * scanning every master of a cluster. Bounded by `limit`.
 */
export async function scanStreams(client: RedisClient, match: string, limit: number): Promise<string[]> {
  const nodes = keyNodes(client);
  const found: string[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000, 'TYPE', 'stream');
      cursor = next;
      for (const k of batch) {
        found.push(k);
        if (found.length >= limit) return found.sort();
      }
    } while (cursor !== '0');
  }
  return found.sort();
}

/**
 * An incremental SCAN over the streams matching a pattern, on every master,
 * for work that must stay bounded per call however many keys exist (retention
 * of the devices' command streams): each next() examines about `perCall` keys
 * per node (SCAN COUNT) and continues where the previous call stopped; a
 * cycle ends when every node's cursor is back at 0. SCAN guarantees that a key
 * present for the whole cycle is returned at least once in it (it may be
 * returned twice: callers must tolerate that).
 */
export class StreamScanner {
  /** Cursor per node ("host:port"); a node not in the map starts at 0. */
  private readonly cursors = new Map<string, string>();
  private cycleDone = new Set<string>();

  constructor(
    private readonly client: RedisClient,
    private readonly match: string,
    private readonly perCall: number,
  ) {}

  /** The next batch of keys, and whether this call completed a cycle over every node. */
  async next(): Promise<{ keys: string[]; cycleEnd: boolean }> {
    const nodes = keyNodes(this.client);
    const found = new Set<string>();
    const names: string[] = [];
    for (const node of nodes) {
      const name = `${node.options.host ?? ''}:${node.options.port ?? ''}`;
      names.push(name);
      if (this.cycleDone.has(name)) continue;
      let cursor = this.cursors.get(name) ?? '0';
      let examined = 0;
      // SCAN COUNT is a hint of how much of the keyspace one call walks; calls of at most 1000 keep each one short.
      do {
        const count = Math.min(1000, this.perCall - examined);
        const [next, batch] = await node.scan(cursor, 'MATCH', this.match, 'COUNT', count, 'TYPE', 'stream');
        cursor = next;
        examined += count;
        for (const k of batch) found.add(k);
      } while (cursor !== '0' && examined < this.perCall);
      this.cursors.set(name, cursor);
      if (cursor === '0') this.cycleDone.add(name);
    }
    const cycleEnd = names.every((n) => this.cycleDone.has(n));
    if (cycleEnd) {
      this.cycleDone = new Set();
      this.cursors.clear();
    }
    return { keys: [...found].sort(), cycleEnd };
  }
}
