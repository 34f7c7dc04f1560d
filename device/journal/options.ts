/** Options of the store-and-forward journal; the defaults live in the schema, once. */
import { type ConfigOf, opt } from '#shared/config/schema.js';

export const journalSchema = {
  'journal.enabled': opt.boolean(
    true,
    'Journal telemetry to disk (device.dataDir/journal) while Redis is unreachable; off: count and drop',
  ),
  'journal.maxBytes': opt.size(64 * 1024 * 1024, 'Disk budget of the journal; see journal.fullPolicy', {
    min: 16 * 1024,
  }),
  'journal.segmentBytes': opt.size(
    4 * 1024 * 1024,
    'Size of one journal segment file (clamped to a quarter of journal.maxBytes)',
    { min: 4 * 1024, max: 256 * 1024 * 1024 },
  ),
  'journal.fullPolicy': opt.enum(
    ['drop-oldest', 'drop-newest'],
    'drop-oldest',
    'When the budget is full: drop the oldest unsent segment, or refuse new entries (both counted)',
  ),
  'journal.fsync': opt.enum(
    ['batch', 'interval'],
    'batch',
    'batch: fsync every written batch; interval: fsync at most every journal.fsyncInterval',
  ),
  'journal.fsyncInterval': opt.duration(1000, 'Time between fsyncs with journal.fsync=interval', {
    min: 1,
  }),
  'journal.flushInterval': opt.duration(
    20,
    'Entries are collected this long (or up to 1 MiB) and written to the journal as one batch',
    { min: 0, max: 10_000 },
  ),
  'journal.replay': opt.enum(
    ['beside-live', 'ordered'],
    'beside-live',
    'beside-live: replay the backlog beside live data; ordered: backlog first, live data queues behind it',
  ),
  'journal.replayRate': opt.integer(
    2000,
    'Most journal entries replayed per second after an outage (0 = no limit)',
    { min: 0 },
  ),
  'journal.commitInterval': opt.duration(
    500,
    'How often the replay position (committed offset) is persisted; a restart resends at most this much',
    { min: 0, max: 60_000 },
  ),
} as const;

export type JournalSchema = typeof journalSchema;
export type JournalConfig = ConfigOf<JournalSchema>;

export interface JournalOptions {
  dir: string;
  maxBytes: number;
  segmentBytes: number;
  fullPolicy: 'drop-oldest' | 'drop-newest';
  fsync: 'batch' | 'interval';
  fsyncIntervalMs: number;
  flushIntervalMs: number;
  /** A batch is written as soon as this many bytes wait. */
  flushBytes: number;
  commitIntervalMs: number;
}

export interface ReplayOptions {
  mode: 'beside-live' | 'ordered';
  /** Entries per second; 0 = unlimited. */
  rate: number;
}

export function journalOptions(
  c: Partial<JournalConfig>,
  dir: string,
): { journal: JournalOptions; replay: ReplayOptions } {
  const v = <K extends keyof JournalConfig>(k: K): JournalConfig[K] =>
    (c[k] ?? journalSchema[k].default) as JournalConfig[K];
  const maxBytes = v('journal.maxBytes');
  // At least four segments fit in the budget, so drop-oldest frees at most a quarter of it at a time.
  const segmentBytes = Math.max(1024, Math.min(v('journal.segmentBytes'), Math.floor(maxBytes / 4)));
  return {
    journal: {
      dir,
      maxBytes,
      segmentBytes,
      fullPolicy: v('journal.fullPolicy'),
      fsync: v('journal.fsync'),
      fsyncIntervalMs: v('journal.fsyncInterval'),
      flushIntervalMs: v('journal.flushInterval'),
      // Bounds the write buffer; at high rates it also sets how many bytes each fsync covers.
      flushBytes: Math.min(1024 * 1024, segmentBytes),
      commitIntervalMs: v('journal.commitInterval'),
    },
    replay: { mode: v('journal.replay'), rate: v('journal.replayRate') },
  };
}
