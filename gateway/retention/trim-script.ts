/**
 * The typed call of trimStream-1.lua, retention's one script: its arguments by
 * name, its reply decoded (layout in the script's header). No other module
 * passes the script positional arguments or reads its reply.
 */
import type { RedisClient } from '#shared/redis/connect.js';
import { scripts } from '#shared/redis/scripts.js';

export interface TrimArgs {
  stream: string;
  /** Remove entries older than this (0 = no age limit). */
  maxAgeMs: number;
  /** Keep at most this many entries (0 = no length limit). */
  maxLen: number;
  /** Hard memory cap, by MEMORY USAGE (0 = no cap). */
  maxBytes: number;
  /** Over the cap, trim down to about this many bytes. */
  capTargetBytes: number;
  /** Most entries the length policy and the cap remove in one call. */
  maxRemove: number;
  /** The time the age policy measures from (0 = the server's TIME). */
  nowMs: number;
  /** Samples for MEMORY USAGE (0 = exact, slow on big streams). */
  memorySamples: number;
  /** A stream with no consumer group at all is held back whole by the soft policies. */
  holdUngrouped: boolean;
}

/** One trim step's outcome: what was removed, what is left, and each group's position. */
export interface TrimReply {
  readonly lengthBefore: number;
  readonly removed: { age: number; length: number; cap: number };
  readonly lengthAfter: number;
  readonly memoryBytes: number;
  /** The length policy or the cap still has entries to remove. */
  readonly more: boolean;
  /** The group that held back a soft policy, if one did. */
  readonly blockedBy: string | null;
  /** Server time the age policy measured from. */
  readonly now: number;
  readonly groups: GroupOutcome[];
}

/** One lag-aware retention step on one stream, atomically (trimStream-1.lua). */
export async function trimStream(client: RedisClient, a: TrimArgs): Promise<TrimReply> {
  const reply = await scripts(client).trimStream(
    a.stream,
    a.maxAgeMs,
    a.maxLen,
    a.maxBytes,
    a.capTargetBytes,
    a.maxRemove,
    a.nowMs,
    a.memorySamples,
    a.holdUngrouped ? 1 : 0,
  );
  return parseTrimReply(reply);
}

export interface GroupOutcome {
  readonly name: string;
  /** Unprocessed entries of this group removed by the hard cap in this pass. */
  readonly lost: number;
  readonly pending: number;
  readonly consumers: number;
  /** Entries not yet delivered; null when Redis cannot tell. */
  readonly lag: number | null;
  readonly lastDeliveredId: string;
  readonly oldestPendingId: string | null;
}

/** Decodes trimStream-1.lua's reply (layout in the script's header). */
export function parseTrimReply(reply: ReadonlyArray<string | number>): TrimReply {
  const n = (i: number) => Number(reply[i] ?? 0);
  const s = (i: number) => String(reply[i] ?? '');
  const groups: GroupOutcome[] = [];
  const count = n(9);
  for (let i = 0; i < count; i++) {
    const at = 10 + i * 7;
    const lag = n(at + 3);
    groups.push({
      name: s(at),
      lost: n(at + 1),
      pending: n(at + 2),
      lag: lag < 0 ? null : lag,
      lastDeliveredId: s(at + 4),
      oldestPendingId: s(at + 5) || null,
      consumers: n(at + 6),
    });
  }
  return {
    lengthBefore: n(0),
    removed: { age: n(1), length: n(2), cap: n(3) },
    lengthAfter: n(4),
    memoryBytes: n(5),
    more: n(6) === 1,
    blockedBy: s(7) || null,
    now: n(8),
    groups,
  };
}
