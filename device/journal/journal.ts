/**
 * The store-and-forward journal: an append-only log of telemetry envelopes on
 * disk, in segment files, with a committed offset.
 *
 * Every entry gets an index (0, 1, 2, ... for the life of the journal, across
 * restarts). A segment file is named after the index of its first entry
 * (`00000000000000001234.seg`) and holds records framed by record.ts (length +
 * CRC-32). The `committed` file holds the index below which every entry was
 * acknowledged by Redis; the replay cursor runs ahead of it while a batch is in
 * flight and is rewound to it when a batch fails. Segments entirely below the
 * committed offset are deleted, so disk use follows the unsent backlog.
 *
 * Appends are collected in memory for `flushIntervalMs` (or `flushBytes`) and
 * written as one write(2), then fsynced per batch or at most every
 * `fsyncIntervalMs` (see docs/store-and-forward.md for what each policy can
 * lose). The size budget `maxBytes` covers segments and the write buffer; when
 * it is full the `fullPolicy` decides: delete the oldest segment (its unsent
 * entries are counted as dropped) or refuse the new entry (counted as dropped).
 *
 * "Dropped" means "never reaches Redis", so the drop counter equals what is
 * missing from the stream. Two kinds of entries in a deleted segment may
 * already be in Redis, or may still get there: entries handed to the replayer
 * (in flight), and entries journaled as `uncertain` (from a batch that was
 * sent but never answered: the connection closed or the append timed out
 * after Redis may have executed it). Neither is counted when its segment goes.
 * An in-flight entry is counted only if its batch fails and there is no room
 * to hold it; an uncertain one is kept in memory (`held`, at most
 * HELD_MAX_BYTES) and sent again first once Redis is back, where the
 * idempotent append either takes it or refuses it as already there. Only what
 * does not fit the held buffer is counted as dropped.
 *
 * On open, every segment is scanned: a record whose checksum or length does
 * not hold (a write torn by a crash or power loss) ends its segment; the file
 * is truncated there and a warning says how many bytes and entries were lost.
 * Records before it are intact and kept. The entries cut off with it are
 * counted once, when the file is cut (`onTorn`): in a segment followed by
 * another one exactly (the next segment's name is the index after the last
 * entry), in the last segment as the bad record plus the whole records found
 * past it. A cut in the middle of the journal leaves a range of indices that
 * no segment holds (`lost`); the cursor and the committed offset skip it, and
 * it does not count as unsent.
 *
 * All file I/O is synchronous: batches are small, the writer and the reader
 * then never interleave half-done operations, and the order of records on disk
 * is the order of `append` calls.
 */
import {
  closeSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { type Clock, systemClock } from '#shared/clock.js';
import { type EncodedEnvelope, encodedSize } from '#shared/envelope.js';
import type { Logger } from '#shared/log.js';
import { syncDirectory, writeFileDurably } from './durable-file.js';
import type { JournalOptions } from './options.js';
import { encodeRecord } from './record.js';
import { withSegmentReader } from './segment-reader.js';

const SEGMENT_RE = /^(\d{20})\.seg$/;
const COMMITTED_FILE = 'committed';
/**
 * Bytes of entries held in memory after their segment was deleted because
 * they may already be in Redis (see the file comment). Beyond it the oldest
 * are counted as dropped (an over-count only if they were in fact in Redis).
 */
export const HELD_MAX_BYTES = 1024 * 1024;

interface Segment {
  readonly first: number;
  readonly path: string;
  /** Records in the file (written, not buffered). */
  count: number;
  /** Bytes of whole, valid records in the file. */
  bytes: number;
}

export interface JournalEvents {
  /** Entries lost to the full policy (drop-oldest: unsent entries of a deleted segment; drop-newest: refused). */
  onDropped?(count: number): void;
  /**
   * Torn or corrupt records were found on open and cut off: `records` counts
   * the bad record and the whole records after it in its segment, `unsent`
   * those of them Redis had not acknowledged (lost: they never reach Redis).
   */
  onTorn?(records: number, unsent: number): void;
}

export interface ScannedEntry {
  index: number;
  entry: EncodedEnvelope;
}

export interface ScanResult {
  committed: number;
  entries: ScannedEntry[];
  /** Segments whose tail did not decode (torn or corrupt), with the bytes after the last good record. */
  torn: Array<{ file: string; skippedBytes: number; reason: string }>;
}

function segmentName(first: number): string {
  return `${String(first).padStart(20, '0')}.seg`;
}

/** Scans a segment file's records (through a bounded window); stops at the first torn or corrupt one. */
function scanSegment(
  path: string,
  each?: (entry: EncodedEnvelope, i: number) => void,
): {
  count: number;
  validBytes: number;
  fileBytes: number;
  problem: string | undefined;
  recordsAfter: number;
} {
  const fileBytes = statSync(path).size;
  return withSegmentReader(path, fileBytes, (reader) => {
    let count = 0;
    const { end, problem } = reader.scan(0, (entry) => {
      each?.(entry, count);
      count++;
      return true;
    });
    // Only a cut last segment needs them counted (see load); cheap next to the scan itself.
    const recordsAfter = problem ? reader.recordsAfter(end) : 0;
    return { count, validBytes: end, fileBytes, problem, recordsAfter };
  });
}

/** Cuts a file to `bytes` and makes that durable. */
function truncateFile(path: string, bytes: number): void {
  const fd = openSync(path, 'r+');
  try {
    ftruncateSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function readCommitted(dir: string): number {
  try {
    const n = Number(readFileSync(join(dir, COMMITTED_FILE), 'utf8').trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  } catch {
    return 0;
  }
}

function listSegments(dir: string): Array<{ first: number; path: string }> {
  return readdirSync(dir)
    .flatMap((f) => {
      const m = SEGMENT_RE.exec(f);
      return m ? [{ first: Number(m[1]), path: join(dir, f) }] : [];
    })
    .sort((a, b) => a.first - b.first);
}

/**
 * Reads a journal directory without changing it (tests, tools): the committed
 * offset and every entry at or above it that decodes.
 */
export function scanJournal(dir: string): ScanResult {
  const committed = readCommitted(dir);
  const entries: ScannedEntry[] = [];
  const torn: ScanResult['torn'] = [];
  for (const s of listSegments(dir)) {
    const parsed = scanSegment(s.path, (entry, i) => {
      if (s.first + i >= committed) entries.push({ index: s.first + i, entry });
    });
    if (parsed.problem)
      torn.push({ file: s.path, skippedBytes: parsed.fileBytes - parsed.validBytes, reason: parsed.problem });
  }
  return { committed, entries, torn };
}

export class Journal {
  private readonly segments: Segment[] = [];
  /** Sum of the segments' bytes. */
  private diskBytes = 0;
  private fd: number | undefined;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private bufferedTimes: number[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private fsyncTimer: NodeJS.Timeout | undefined;
  private lastFsync = 0;
  private dirty = false;
  private commitTimer: NodeJS.Timeout | undefined;
  private persistedCommitted: number;
  private nextIndex: number;
  private committedIndex: number;
  private cursorIndex: number;
  /** Where the cursor's record starts, when known: segment first index and byte offset. */
  private readPos: { first: number; byte: number; index: number } | undefined;
  private oldestTime: { index: number; time: number } | undefined;
  private closed = false;
  /** Index ranges [from, to) journaled from batches whose outcome is unknown (may be in Redis). */
  private uncertain: Array<[number, number]> = [];
  /** Entries whose segment was deleted but which may be in Redis already: sent again first. */
  private held: Array<{ entry: EncodedEnvelope; bytes: number }> = [];
  private heldBytes = 0;
  /**
   * Index ranges [from, to) above the committed offset that no segment holds:
   * entries cut off with a corrupt record in the middle of the journal (counted
   * when cut). Sorted; empty unless a segment other than the last was cut.
   */
  private lost: Array<[number, number]> = [];
  private readonly clock: Clock;
  /** written: entries written to disk; dropped: lost to the full policy; torn: records cut off on open. */
  readonly totals = { written: 0, dropped: 0, torn: 0 };

  private constructor(
    private readonly options: JournalOptions,
    private readonly logger: Logger,
    private readonly events: JournalEvents,
    clock: Clock,
    committed: number,
  ) {
    this.clock = clock;
    this.committedIndex = committed;
    this.persistedCommitted = committed;
    this.cursorIndex = committed;
    this.nextIndex = committed;
  }

  static open(
    options: JournalOptions,
    deps: { logger: Logger; clock?: Clock; events?: JournalEvents },
  ): Journal {
    mkdirSync(options.dir, { recursive: true });
    const j = new Journal(
      options,
      deps.logger,
      deps.events ?? {},
      deps.clock ?? systemClock,
      readCommitted(options.dir),
    );
    j.load();
    return j;
  }

  private load(): void {
    let torn = 0;
    let tornUnsent = 0;
    const cutHere = new Set<number>();
    const found = listSegments(this.options.dir);
    for (const [i, s] of found.entries()) {
      const parsed = scanSegment(s.path);
      if (parsed.problem) {
        // A crash mid-write leaves a partial last record; nothing before it is affected. Corruption
        // elsewhere (bad storage) loses the rest of its segment: count what is lost, exactly when a
        // segment follows (its name is the index after this one's last entry).
        const cutFrom = s.first + parsed.count;
        const next = found[i + 1];
        const cut = next ? Math.max(0, next.first - cutFrom) : 1 + parsed.recordsAfter;
        const unsent = Math.max(0, cutFrom + cut - Math.max(cutFrom, this.committedIndex));
        torn += cut;
        tornUnsent += unsent;
        cutHere.add(s.first);
        this.logger.warn(
          {
            file: s.path,
            skippedBytes: parsed.fileBytes - parsed.validBytes,
            reason: parsed.problem,
            keptEntries: parsed.count,
            lostEntries: unsent,
            cutRecords: cut,
          },
          `journal: torn or corrupt record skipped (file truncated to its last whole record; ${unsent} unsent entries lost)`,
        );
        truncateFile(s.path, parsed.validBytes);
      }
      const end = s.first + parsed.count;
      if (end <= this.committedIndex || parsed.count === 0) {
        // Acknowledged before a crash that came between commit and delete, or empty.
        unlinkSync(s.path);
        continue;
      }
      this.segments.push({
        first: s.first,
        path: s.path,
        count: parsed.count,
        bytes: parsed.validBytes,
      });
      this.diskBytes += parsed.validBytes;
      this.nextIndex = Math.max(this.nextIndex, end);
    }
    // Indices between two segments were cut off with a corrupt record (in this start, and counted
    // above, or in an earlier one, and counted then): skipped, never waited for.
    let earlier = 0;
    for (let i = 1; i < this.segments.length; i++) {
      const a = this.segments[i - 1]!;
      const b = this.segments[i]!;
      const end = a.first + a.count;
      if (end < b.first) {
        this.lost.push([end, b.first]);
        // Cut now: the segment before the gap, or one inside it that was cut empty and deleted.
        const now = [...cutHere].some((f) => f >= a.first && f < b.first);
        if (!now) earlier += b.first - end;
      }
    }
    if (earlier > 0)
      this.logger.info(
        { lostEntries: earlier },
        'journal: skipping entries cut off by a corrupt record before the restart (counted then)',
      );
    const first = this.segments[0];
    if (first && first.first > this.committedIndex) this.committedIndex = first.first;
    this.committedIndex = this.skipLost(this.committedIndex);
    this.cursorIndex = this.committedIndex;
    if (torn > 0) {
      this.totals.torn += torn;
      this.events.onTorn?.(torn, tornUnsent);
    }
    const last = this.segments[this.segments.length - 1];
    if (last) this.fd = openSync(last.path, 'a');
  }

  /** Index below which every entry is acknowledged. */
  get committed(): number {
    return this.committedIndex;
  }

  /** Entries not yet acknowledged (on disk, buffered, and held in memory). */
  get unsent(): number {
    return this.nextIndex - this.committedIndex - this.lostFrom(this.committedIndex) + this.held.length;
  }

  /** Entries not yet handed to the replayer (held ones included). */
  get unread(): number {
    return this.nextIndex - this.cursorIndex - this.lostFrom(this.cursorIndex) + this.held.length;
  }

  /** Entries held in memory after their segment was deleted (they may be in Redis already). */
  get heldCount(): number {
    return this.held.length;
  }

  /**
   * Hands out the held entries (they leave the journal's accounting): the
   * caller sends them and gives back with `hold` what failed.
   */
  takeHeld(max: number): EncodedEnvelope[] {
    const taken = this.held.splice(0, Math.max(0, max));
    for (const h of taken) this.heldBytes -= h.bytes;
    return taken.map((h) => h.entry);
  }

  /**
   * Keeps entries in memory that may be in Redis already and must be sent
   * again (a held batch or an in-flight batch of a deleted segment failed).
   * Within HELD_MAX_BYTES; the oldest beyond it are counted as dropped.
   */
  hold(entries: readonly EncodedEnvelope[]): void {
    for (const entry of entries) {
      const bytes = encodedSize(entry);
      this.held.push({ entry, bytes });
      this.heldBytes += bytes;
    }
    let over = 0;
    while (this.heldBytes > HELD_MAX_BYTES && this.held.length > 0) {
      this.heldBytes -= this.held.shift()!.bytes;
      over++;
    }
    if (over > 0) this.drop(over);
  }

  /** Bytes on disk plus bytes waiting to be written. */
  get bytes(): number {
    return this.diskBytes + this.bufferedBytes;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Index of the oldest entry still in the journal. */
  get firstAvailable(): number {
    return this.segments[0]?.first ?? this.nextIndex - this.bufferedTimes.length;
  }

  /** Device time of the oldest unsent entry, or undefined when nothing is unsent. */
  oldestUnsentTime(): number | undefined {
    if (this.unsent === 0) return undefined;
    const at = this.committedIndex;
    if (this.oldestTime?.index === at) return this.oldestTime.time;
    const written = this.nextIndex - this.bufferedTimes.length;
    let time: number | undefined;
    if (at >= written) time = this.bufferedTimes[at - written];
    else time = this.readAt(at)?.time;
    if (time !== undefined) this.oldestTime = { index: at, time };
    return time;
  }

  /**
   * Appends entries (buffered; written within flushIntervalMs). Returns how
   * many were taken; the rest were refused by the drop-newest policy.
   */
  append(entries: readonly EncodedEnvelope[], opts: { uncertain?: boolean } = {}): number {
    if (this.closed) throw new TypeError('journal is closed');
    const o = this.options;
    let taken = 0;
    let refused = 0;
    for (const e of entries) {
      const rec = encodeRecord(e);
      if (this.bytes + rec.length > o.maxBytes) {
        if (o.fullPolicy === 'drop-newest' || !this.dropOldest(rec.length)) {
          refused++;
          continue;
        }
      }
      // The last segment is the active one only while it is open: after a roll the buffer starts a new one.
      const active = this.fd === undefined ? undefined : this.segments[this.segments.length - 1];
      const activeBytes = (active?.bytes ?? 0) + this.bufferedBytes;
      if (activeBytes > 0 && activeBytes + rec.length > o.segmentBytes) {
        this.writeBuffered();
        this.roll();
      }
      this.buffered.push(rec);
      this.bufferedBytes += rec.length;
      this.bufferedTimes.push(e.time);
      this.nextIndex++;
      taken++;
      if (this.bufferedBytes >= o.flushBytes) this.writeBuffered();
    }
    if (refused > 0) this.drop(refused);
    if (opts.uncertain && taken > 0) this.markUncertain(this.nextIndex - taken, this.nextIndex);
    if (this.buffered.length > 0 && !this.flushTimer) {
      if (o.flushIntervalMs === 0) this.writeBuffered();
      else
        this.flushTimer = this.clock.setTimeout(() => {
          this.flushTimer = undefined;
          this.writeBuffered();
        }, o.flushIntervalMs);
    }
    return taken;
  }

  /**
   * Hands out up to `max` unread entries, oldest first, and advances the
   * cursor past them. They stay in the journal until `commit`.
   */
  read(max: number): { first: number; entries: EncodedEnvelope[] } {
    // Entries are handed out contiguous from `first` (the caller commits first + length): a lost
    // range is skipped here, and the loop below stops at one.
    this.cursorIndex = this.skipLost(this.cursorIndex);
    const first = this.cursorIndex;
    const entries: EncodedEnvelope[] = [];
    if (this.closed || max <= 0 || this.cursorIndex >= this.nextIndex) return { first, entries };
    if (this.cursorIndex >= this.nextIndex - this.bufferedTimes.length) this.writeBuffered();
    while (entries.length < max && this.cursorIndex < this.nextIndex) {
      const pos = this.seek(this.cursorIndex);
      if (!pos) break;
      const { seg, byte } = pos;
      const { end, problem } = withSegmentReader(seg.path, seg.bytes, (reader) =>
        reader.scan(byte, (entry) => {
          entries.push(entry);
          this.cursorIndex++;
          return entries.length < max;
        }),
      );
      this.readPos = { first: seg.first, byte: end, index: this.cursorIndex };
      if (problem) {
        // Validated on open and written by us since: the file changed under us. Cut the segment
        // here as on open: the rest is a lost range, counted once as torn (not as the full
        // policy), and never read again after a rewind.
        const segEnd = seg.first + seg.count;
        const lost = segEnd - this.cursorIndex;
        this.logger.error(
          { file: seg.path, lostEntries: lost, reason: problem },
          'journal: segment unreadable past this point',
        );
        if (seg === this.segments[this.segments.length - 1] && this.fd !== undefined) this.roll();
        truncateFile(seg.path, end);
        this.diskBytes -= seg.bytes - end;
        seg.bytes = end;
        seg.count = this.cursorIndex - seg.first;
        this.lost.push([this.cursorIndex, segEnd]);
        this.lost.sort((x, y) => x[0] - y[0]);
        this.readPos = undefined;
        this.totals.torn += lost;
        this.events.onTorn?.(lost, lost);
        break;
      }
    }
    return { first, entries };
  }

  /** Every entry below `upTo` was acknowledged: advance the committed offset, free whole segments. */
  commit(upTo: number): void {
    if (this.closed || upTo <= this.committedIndex) return;
    this.committedIndex = this.skipLost(Math.min(upTo, this.nextIndex));
    if (this.cursorIndex < this.committedIndex) this.cursorIndex = this.committedIndex;
    this.freeCommitted();
    this.scheduleCommitWrite();
  }

  /** A handed-out batch failed: the next read starts again at the committed offset. */
  rewind(): void {
    this.cursorIndex = this.skipLost(Math.max(this.committedIndex, this.firstAvailable));
    if (this.committedIndex < this.cursorIndex) this.committedIndex = this.cursorIndex;
    this.pruneLost();
  }

  /** Writes what is buffered, fsyncs, persists the committed offset, closes files. */
  close(): void {
    if (this.closed) return;
    // Held entries go back to disk so a restart sends them again (the idempotent append sorts them out).
    if (this.held.length > 0) this.append(this.takeHeld(this.held.length));
    this.writeBuffered();
    if (this.fd !== undefined) {
      if (this.dirty) fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = undefined;
    }
    for (const t of [this.flushTimer, this.fsyncTimer, this.commitTimer]) if (t) this.clock.clearTimeout(t);
    this.writeCommitted();
    this.closed = true;
  }

  /** Writes the buffered records as one write, then fsyncs per policy. */
  writeBuffered(): void {
    if (this.flushTimer) {
      this.clock.clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    const n = this.buffered.length;
    if (n === 0) return;
    let active = this.segments[this.segments.length - 1];
    if (!active || this.fd === undefined) {
      active = this.createSegment(this.nextIndex - n);
    }
    const data = n === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedBytes);
    let off = 0;
    while (off < data.length) off += writeSync(this.fd!, data, off);
    active.count += n;
    active.bytes += data.length;
    this.diskBytes += data.length;
    this.totals.written += n;
    this.buffered = [];
    this.bufferedBytes = 0;
    this.bufferedTimes = [];
    this.dirty = true;
    this.syncPerPolicy();
  }

  private syncPerPolicy(): void {
    if (this.fd === undefined || !this.dirty) return;
    const now = this.clock.now();
    if (this.options.fsync === 'batch' || now - this.lastFsync >= this.options.fsyncIntervalMs) {
      fsyncSync(this.fd);
      this.dirty = false;
      this.lastFsync = now;
    } else if (!this.fsyncTimer) {
      this.fsyncTimer = this.clock.setTimeout(
        () => {
          this.fsyncTimer = undefined;
          if (!this.closed) this.syncPerPolicy();
        },
        this.options.fsyncIntervalMs - (now - this.lastFsync),
      );
    }
  }

  private createSegment(first: number): Segment {
    if (this.fd !== undefined) closeSync(this.fd);
    const seg: Segment = { first, path: join(this.options.dir, segmentName(first)), count: 0, bytes: 0 };
    this.fd = openSync(seg.path, 'a');
    this.segments.push(seg);
    this.syncDir();
    return seg;
  }

  /** Closes the active segment; the next write opens a new one. */
  private roll(): void {
    if (this.fd === undefined) return;
    if (this.dirty) fsyncSync(this.fd);
    this.dirty = false;
    closeSync(this.fd);
    this.fd = undefined;
  }

  /** Makes a created or deleted file name durable (fsync of the directory). */
  private syncDir(): void {
    syncDirectory(this.options.dir);
  }

  /** drop-oldest: deletes the oldest segment(s) until `need` more bytes fit. Returns false if impossible. */
  private dropOldest(need: number): boolean {
    while (this.bytes + need > this.options.maxBytes) {
      if (this.segments.length === 0) return false;
      if (this.segments.length === 1 && this.fd !== undefined) {
        // Only the active segment is left: close it so it can go, new entries start a new one.
        this.writeBuffered();
        this.roll();
      }
      const seg = this.segments.shift()!;
      const end = seg.first + seg.count;
      // Entries in flight (below the cursor) are not lost yet: the replayer holds them if their batch fails.
      const from = Math.max(seg.first, this.cursorIndex);
      let lost = Math.max(0, end - from);
      // Unread entries that may be in Redis already are kept in memory and sent again, not counted.
      const maybeSent = this.uncertainIn(from, end);
      if (maybeSent.size > 0) {
        const kept = this.readSegmentEntries(seg, maybeSent);
        lost -= kept.length;
        this.hold(kept);
      }
      this.uncertain = this.uncertain.filter(([, to]) => to > end);
      unlinkSync(seg.path);
      this.diskBytes -= seg.bytes;
      if (this.committedIndex < end) this.committedIndex = this.skipLost(Math.min(end, this.nextIndex));
      if (this.cursorIndex < end) this.cursorIndex = this.skipLost(end);
      this.pruneLost();
      if (this.readPos?.first === seg.first) this.readPos = undefined;
      if (lost > 0) this.drop(lost);
      this.scheduleCommitWrite();
    }
    return true;
  }

  private markUncertain(from: number, to: number): void {
    const last = this.uncertain[this.uncertain.length - 1];
    if (last && last[1] === from) last[1] = to;
    else this.uncertain.push([from, to]);
  }

  /** Indices in [from, to) journaled as uncertain. */
  private uncertainIn(from: number, to: number): Set<number> {
    const out = new Set<number>();
    for (const [a, b] of this.uncertain) for (let i = Math.max(a, from); i < Math.min(b, to); i++) out.add(i);
    return out;
  }

  /** The entries of `seg` whose index is in `wanted` (read through a bounded window). */
  private readSegmentEntries(seg: Segment, wanted: ReadonlySet<number>): EncodedEnvelope[] {
    const out: EncodedEnvelope[] = [];
    let index = seg.first;
    withSegmentReader(seg.path, seg.bytes, (reader) =>
      reader.scan(0, (entry) => {
        if (wanted.has(index)) out.push(entry);
        index++;
        return true;
      }),
    );
    return out;
  }

  private drop(n: number): void {
    this.totals.dropped += n;
    this.events.onDropped?.(n);
  }

  private freeCommitted(): void {
    while (this.segments.length > 0) {
      const seg = this.segments[0]!;
      if (seg.first + seg.count > this.committedIndex) break;
      const isActive = this.segments.length === 1 && this.fd !== undefined;
      if (isActive) {
        // The active segment goes only when nothing is buffered behind it.
        if (this.buffered.length > 0) break;
        this.roll();
      }
      this.segments.shift();
      unlinkSync(seg.path);
      this.diskBytes -= seg.bytes;
      if (this.readPos?.first === seg.first) this.readPos = undefined;
    }
    this.uncertain = this.uncertain.filter(([, to]) => to > this.committedIndex);
    this.pruneLost();
  }

  /** `index`, or the end of the lost range it falls in (see `lost`). */
  private skipLost(index: number): number {
    for (const [from, to] of this.lost) if (index >= from && index < to) return to;
    return index;
  }

  /** Lost indices at or above `index` (not entries: they count neither as unsent nor as unread). */
  private lostFrom(index: number): number {
    let n = 0;
    for (const [from, to] of this.lost) n += Math.max(0, to - Math.max(from, index));
    return n;
  }

  /** Forgets lost ranges below the committed offset. */
  private pruneLost(): void {
    if (this.lost.length > 0) this.lost = this.lost.filter(([, to]) => to > this.committedIndex);
  }

  private scheduleCommitWrite(): void {
    if (this.commitTimer || this.closed) return;
    if (this.options.commitIntervalMs === 0) {
      this.writeCommitted();
      return;
    }
    this.commitTimer = this.clock.setTimeout(() => {
      this.commitTimer = undefined;
      if (!this.closed) this.writeCommitted();
    }, this.options.commitIntervalMs);
  }

  /** Persists the committed offset atomically and durably (write, fsync, rename, fsync the directory). */
  private writeCommitted(): void {
    if (this.committedIndex === this.persistedCommitted) return;
    writeFileDurably(join(this.options.dir, COMMITTED_FILE), `${this.committedIndex}\n`);
    this.persistedCommitted = this.committedIndex;
  }

  /** The segment and byte offset where entry `index` starts. */
  private seek(index: number, remember = true): { seg: Segment; byte: number } | undefined {
    const seg = this.segments.find((s) => index >= s.first && index < s.first + s.count);
    if (!seg) return undefined;
    if (this.readPos && this.readPos.first === seg.first && this.readPos.index === index) {
      return { seg, byte: this.readPos.byte };
    }
    // Walk the records from the start of the segment (after a rewind or a restart), a window at a time.
    let i = seg.first;
    let o = 0;
    if (index > seg.first) {
      const walked = withSegmentReader(seg.path, seg.bytes, (reader) => reader.scan(0, () => ++i < index));
      if (walked.problem || i < index) return undefined;
      o = walked.end;
    }
    if (remember) this.readPos = { first: seg.first, byte: o, index };
    return { seg, byte: o };
  }

  private readAt(index: number): EncodedEnvelope | undefined {
    const pos = this.seek(index, false);
    if (!pos) return undefined;
    const r = withSegmentReader(pos.seg.path, pos.seg.bytes, (reader) => reader.decode(pos.byte));
    return r.kind === 'record' ? r.entry : undefined;
  }
}
