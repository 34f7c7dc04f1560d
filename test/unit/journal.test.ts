/**
 * The disk journal (device/journal/): record framing and checksum, segments,
 * committed offset across restarts, torn tails, and both full policies with
 * exact drop counts.
 */
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '#shared/clock.js';
import { type EncodedEnvelope, encodeEnvelope } from '#shared/envelope.js';
import { silentLogger } from '#shared/log.js';
import type { TelemetryProducer } from '#shared/telemetry/producer.js';
import { crc32 } from '../../device/journal/crc32.js';
import { Journal, scanJournal } from '../../device/journal/journal.js';
import { journalOptions } from '../../device/journal/options.js';
import { decodeRecord, encodeRecord } from '../../device/journal/record.js';
import { MAX_WINDOW } from '../../device/journal/segment-reader.js';

/** The largest single read of a journal file, and every whole-file read of a segment (memory bound). */
const reads = { largest: 0, wholeSegments: 0 };
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const wrapped = {
    ...fs,
    readSync: ((
      fd: number,
      buffer: NodeJS.ArrayBufferView,
      offset: number,
      length: number,
      position: number,
    ) => {
      reads.largest = Math.max(reads.largest, length);
      return fs.readSync(fd, buffer, offset, length, position);
    }) as typeof fs.readSync,
    readFileSync: ((path: Parameters<typeof fs.readFileSync>[0], options?: never) => {
      if (String(path).endsWith('.seg')) reads.wholeSegments++;
      return fs.readFileSync(path, options);
    }) as typeof fs.readFileSync,
  };
  return { ...wrapped, default: wrapped };
});

import { Replayer } from '../../device/journal/replayer.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'journal-test-'));
  dirs.push(d);
  return d;
}

function entry(seq: number, bytes = 40): EncodedEnvelope {
  return encodeEnvelope({
    deviceId: 'dev-j',
    seq,
    time: 1_700_000_000_000 + seq,
    type: 'constant',
    payload: { x: 'a'.repeat(bytes) },
  });
}

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

function open(dir: string, overrides: Record<string, unknown> = {}, events = {}) {
  const { journal } = journalOptions(
    { 'journal.flushInterval': 0, 'journal.commitInterval': 0, ...overrides },
    dir,
  );
  const log = capture();
  return { journal: Journal.open(journal, { logger: log.logger, events }), lines: log.lines };
}

/** Overwrites 4 bytes at `position` (a record's length field when it is a record boundary). */
function clobber(path: string, position: number): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(4, 0xff), 0, 4, position);
  closeSync(fd);
}

const seqs = (entries: readonly EncodedEnvelope[]) => entries.map((e) => e.seq);
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('crc32 and records', () => {
  it('computes the standard CRC-32 check value', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
  });

  it('round-trips an envelope byte for byte and rejects a flipped bit', () => {
    const e = encodeEnvelope({
      deviceId: 'dev-1',
      seq: 2 ** 40,
      time: 1_700_000_000_123,
      type: 'gps',
      payload: { lat: 1.5, s: 'ü' },
    });
    const rec = encodeRecord(e);
    const r = decodeRecord(rec, 0);
    expect(r).toEqual({ kind: 'record', entry: e, size: rec.length });
    expect(decodeRecord(rec.subarray(0, rec.length - 1), 0).kind).toBe('incomplete');
    const bad = Buffer.from(rec);
    bad[bad.length - 2]! ^= 1;
    expect(decodeRecord(bad, 0)).toMatchObject({ kind: 'corrupt', reason: 'checksum mismatch' });
    // A zero-filled tail (a file extended by a crash) is not a valid empty record.
    expect(decodeRecord(Buffer.alloc(64), 0).kind).toBe('corrupt');
  });
});

describe('journal', () => {
  it('reads back in order across segments and deletes segments once committed', () => {
    const dir = tempDir();
    const { journal } = open(dir, { 'journal.segmentBytes': 4096, 'journal.maxBytes': 1024 * 1024 });
    expect(journal.append(range(1, 200).map((s) => entry(s)))).toBe(200);
    expect(journal.segmentCount).toBeGreaterThan(3);
    const a = journal.read(150);
    expect(a.first).toBe(0);
    expect(seqs(a.entries)).toEqual(range(1, 150));
    journal.commit(150);
    const b = journal.read(1000);
    expect(seqs(b.entries)).toEqual(range(151, 200));
    expect(journal.unsent).toBe(50);
    journal.commit(200);
    expect(journal.unsent).toBe(0);
    expect(journal.bytes).toBe(0);
    expect(readdirSync(dir).filter((f) => f.endsWith('.seg'))).toEqual([]);
    journal.close();
  });

  it('a failed batch is read again after rewind', () => {
    const { journal } = open(tempDir());
    journal.append(range(1, 10).map((s) => entry(s)));
    journal.commit(journal.read(4).first + 4);
    expect(seqs(journal.read(3).entries)).toEqual([5, 6, 7]);
    journal.rewind();
    expect(seqs(journal.read(100).entries)).toEqual(range(5, 10));
    journal.close();
  });

  it('a restart resumes at the persisted committed offset, not at the start', () => {
    const dir = tempDir();
    const first = open(dir, { 'journal.segmentBytes': 4096 }).journal;
    first.append(range(1, 100).map((s) => entry(s)));
    first.read(60);
    first.commit(60);
    first.close();
    const again = open(dir).journal;
    expect(again.unsent).toBe(40);
    expect(again.oldestUnsentTime()).toBe(entry(61).time);
    expect(seqs(again.read(1000).entries)).toEqual(range(61, 100));
    // New entries continue the index sequence.
    again.append([entry(101)]);
    expect(seqs(again.read(10).entries)).toEqual([101]);
    again.close();
    expect(scanJournal(dir).entries.map((e) => e.index)).toEqual(range(60, 100));
  });

  it('skips a torn last record with a warning and keeps everything before it', () => {
    const dir = tempDir();
    const { journal } = open(dir);
    journal.append(range(1, 30).map((s) => entry(s)));
    journal.close();
    const seg = readdirSync(dir).find((f) => f.endsWith('.seg'))!;
    const path = join(dir, seg);
    truncateSync(path, statSync(path).size - 5);
    let torn = 0;
    const again = open(dir, {}, { onTorn: (n: number) => (torn += n) });
    expect(torn).toBe(1);
    const warn = again.lines.find((l) => l.level === 40);
    expect(warn?.msg).toMatch(/torn or corrupt record skipped/);
    expect(again.journal.unsent).toBe(29);
    expect(seqs(again.journal.read(100).entries)).toEqual(range(1, 29));
    // Appends continue cleanly after the truncated tail.
    again.journal.append([entry(31)]);
    again.journal.close();
    expect(scanJournal(dir).entries.map((e) => e.entry.seq)).toEqual([...range(1, 29), 31]);
    expect(scanJournal(dir).torn).toEqual([]);
  });

  it('a corrupt byte in the middle ends that segment, the other segments stay readable', () => {
    const dir = tempDir();
    const { journal } = open(dir, { 'journal.segmentBytes': 4096 });
    journal.append(range(1, 100).map((s) => entry(s)));
    journal.close();
    const before = scanJournal(dir);
    const firstSeg = readdirSync(dir)
      .filter((f) => f.endsWith('.seg'))
      .sort()[0]!;
    const path = join(dir, firstSeg);
    const size = statSync(path).size;
    writeFileSync(path, Buffer.alloc(4, 0xff), { flag: 'r+' }); // clobber the first record's header
    const again = open(dir).journal;
    const after = seqs(again.read(1000).entries);
    // The first segment's records are lost from the clobbered one on; all later segments are intact.
    expect(before.entries).toHaveLength(100);
    expect(size).toBeGreaterThan(0);
    expect(after.length).toBeGreaterThan(50);
    expect(after.length).toBeLessThan(100);
    expect(after).toEqual(range(100 - after.length + 1, 100));
    again.close();
  });

  it('corruption in the middle of a segment: the lost entries are counted, the rest is read, the cursor never stalls', () => {
    // 100 entries in 3 segments; 4 bytes clobbered at a record in the middle of the first. The
    // first segment is cut there, the next one still starts where it did: the indices between
    // are lost. They must be counted and skipped, not leave read() empty forever.
    const dir = tempDir();
    const first = open(dir, { 'journal.segmentBytes': 4096 }).journal;
    first.append(range(1, 100).map((s) => entry(s)));
    first.close();
    const segs = readdirSync(dir)
      .filter((f) => f.endsWith('.seg'))
      .sort();
    expect(segs).toHaveLength(3);
    const secondFirst = Number(segs[1]!.slice(0, 20));
    const recordBytes = encodeRecord(entry(1)).length;
    const keep = Math.floor(secondFirst / 2);
    clobber(join(dir, segs[0]!), keep * recordBytes);
    let torn = 0;
    let lost = 0;
    const again = open(
      dir,
      {},
      {
        onTorn: (n: number, unsent: number) => {
          torn += n;
          lost += unsent;
        },
      },
    );
    const expected = [...range(1, keep), ...range(secondFirst + 1, 100)];
    expect(lost).toBe(secondFirst - keep);
    expect(torn).toBe(secondFirst - keep);
    expect(again.journal.totals.torn).toBe(secondFirst - keep);
    const warn = again.lines.find((l) => l.level === 40);
    expect(warn).toMatchObject({ lostEntries: secondFirst - keep, keptEntries: keep });
    expect(again.journal.unsent).toBe(expected.length);
    // Read and commit as the replayer does, a chunk at a time: every read returns entries until none is left.
    const got: number[] = [];
    for (let i = 0; i < 20 && again.journal.unread > 0; i++) {
      const chunk = again.journal.read(10);
      expect(chunk.entries.length).toBeGreaterThan(0);
      got.push(...seqs(chunk.entries));
      again.journal.commit(chunk.first + chunk.entries.length);
    }
    expect(got).toEqual(expected);
    expect(again.journal.unsent).toBe(0);
    expect(again.journal.oldestUnsentTime()).toBeUndefined();
    again.journal.close();
    // A restart finds nothing left and counts nothing again.
    let tornAfter = 0;
    const third = open(dir, {}, { onTorn: (n: number) => (tornAfter += n) });
    expect(third.journal.unsent).toBe(0);
    expect(tornAfter).toBe(0);
    third.journal.close();
  });

  it('corruption in the middle of a segment, restarted before replaying: the gap is skipped, counted once', () => {
    const dir = tempDir();
    const first = open(dir, { 'journal.segmentBytes': 4096 }).journal;
    first.append(range(1, 100).map((s) => entry(s)));
    first.close();
    const segs = readdirSync(dir)
      .filter((f) => f.endsWith('.seg'))
      .sort();
    const secondFirst = Number(segs[1]!.slice(0, 20));
    const recordBytes = encodeRecord(entry(1)).length;
    clobber(join(dir, segs[0]!), 5 * recordBytes);
    let torn = 0;
    open(dir, {}, { onTorn: (n: number) => (torn += n) }).journal.close();
    expect(torn).toBe(secondFirst - 5);
    const again = open(dir, {}, { onTorn: (n: number) => (torn += n) });
    expect(torn).toBe(secondFirst - 5);
    expect(again.journal.unsent).toBe(5 + 100 - secondFirst);
    const a = again.journal.read(1000);
    expect(seqs(a.entries)).toEqual(range(1, 5));
    again.journal.commit(a.first + a.entries.length);
    const b = again.journal.read(1000);
    expect(seqs(b.entries)).toEqual(range(secondFirst + 1, 100));
    again.journal.commit(b.first + b.entries.length);
    expect(again.journal.unsent).toBe(0);
    again.journal.close();
  });

  it('reads a large segment through a bounded window, never whole (open, read, rewind, oldest time)', () => {
    const dir = tempDir();
    const big = { 'journal.segmentBytes': '16MiB', 'journal.maxBytes': '64MiB' };
    const first = open(dir, big).journal;
    for (let s = 1; s <= 6000; s += 500) first.append(range(s, s + 499).map((n) => entry(n, 1000)));
    expect(first.segmentCount).toBe(1);
    expect(first.bytes).toBeGreaterThan(6 * 1024 * 1024);
    first.close();
    reads.largest = 0;
    reads.wholeSegments = 0;
    const again = open(dir, big).journal;
    expect(again.unsent).toBe(6000);
    const a = again.read(3000);
    expect(seqs(a.entries)).toEqual(range(1, 3000));
    again.commit(a.first + 2000);
    // A failed batch: the cursor goes back into the middle of the segment (a walk from its start).
    again.rewind();
    expect(again.oldestUnsentTime()).toBe(entry(2001).time);
    expect(seqs(again.read(10_000).entries)).toEqual(range(2001, 6000));
    again.close();
    expect(reads.wholeSegments).toBe(0);
    expect(reads.largest).toBeGreaterThan(0);
    expect(reads.largest).toBeLessThanOrEqual(MAX_WINDOW);
  });

  for (const policy of ['drop-oldest', 'drop-newest'] as const) {
    it(`${policy}: stays within the budget and counts exactly what it lost`, () => {
      const dir = tempDir();
      let dropped = 0;
      const { journal } = open(
        dir,
        {
          'journal.maxBytes': 16 * 1024,
          'journal.segmentBytes': 4096,
          'journal.fullPolicy': policy,
          'journal.fsync': 'interval',
        },
        { onDropped: (n: number) => (dropped += n) },
      );
      for (let s = 1; s <= 1000; s++) {
        journal.append([entry(s)]);
        expect(journal.bytes).toBeLessThanOrEqual(16 * 1024);
      }
      const kept = seqs(journal.read(10_000).entries);
      expect(dropped).toBeGreaterThan(0);
      expect(kept.length + dropped).toBe(1000);
      if (policy === 'drop-oldest') expect(kept).toEqual(range(1000 - kept.length + 1, 1000));
      else expect(kept).toEqual(range(1, kept.length));
      // Recovers: once drained, it takes entries again.
      journal.commit(journal.committed + journal.unsent);
      expect(journal.append([entry(1001)])).toBe(1);
      journal.close();
    });
  }

  it('drop-oldest does not count entries in flight (the replayer holds them if their batch fails)', () => {
    let dropped = 0;
    const { journal } = open(
      tempDir(),
      { 'journal.maxBytes': 16 * 1024, 'journal.segmentBytes': 4096 },
      { onDropped: (n: number) => (dropped += n) },
    );
    journal.append(range(1, 60).map((s) => entry(s)));
    const inFlight = journal.read(10);
    for (let s = 61; s <= 200; s++) journal.append([entry(s)]);
    const rest = seqs(journal.read(10_000).entries);
    // In flight (1-10) are neither counted nor expected from the journal.
    expect(seqs(inFlight.entries)).toEqual(range(1, 10));
    expect(rest.length + dropped).toBe(190);
    journal.close();
  });

  it('drop-oldest does not count entries that may be in Redis: it holds them and hands them out again', () => {
    // Entries of a batch that was sent but never answered (connection closed, append timed out)
    // may be in Redis already. Counting them as dropped when their segment goes would make the
    // drop counter exceed what is missing from the stream.
    let dropped = 0;
    const { journal } = open(
      tempDir(),
      { 'journal.maxBytes': 16 * 1024, 'journal.segmentBytes': 4096 },
      { onDropped: (n: number) => (dropped += n) },
    );
    journal.append(range(1, 5).map((s) => entry(s)));
    journal.append(
      range(6, 8).map((s) => entry(s)),
      { uncertain: true },
    );
    for (let s = 9; s <= 400; s++) journal.append([entry(s)]);
    expect(journal.bytes).toBeLessThanOrEqual(16 * 1024);
    expect(journal.heldCount).toBe(3);
    const held = seqs(journal.takeHeld(100));
    const kept = seqs(journal.read(10_000).entries);
    expect(held).toEqual([6, 7, 8]);
    // Counted: exactly the certain entries that went, 1-5 and 9 up to the oldest kept.
    expect(dropped).toBe(5 + (kept[0]! - 9));
    expect(kept).toEqual(range(kept[0]!, 400));
    journal.close();
  });

  it('an in-flight batch of a deleted segment that fails is held, not counted, and counts once acknowledged', () => {
    let dropped = 0;
    const { journal } = open(
      tempDir(),
      { 'journal.maxBytes': 16 * 1024, 'journal.segmentBytes': 4096 },
      { onDropped: (n: number) => (dropped += n) },
    );
    journal.append(range(1, 60).map((s) => entry(s)));
    const inFlight = journal.read(10);
    for (let s = 61; s <= 200; s++) journal.append([entry(s)]);
    expect(journal.firstAvailable).toBeGreaterThan(inFlight.first + 10);
    const droppedBefore = dropped;
    // The batch failed (what the replayer does): the journal holds it instead of counting it.
    journal.hold(inFlight.entries);
    expect(dropped).toBe(droppedBefore);
    expect(journal.unsent).toBe(journal.unread);
    const again = journal.takeHeld(100);
    expect(seqs(again)).toEqual(range(1, 10));
    expect(journal.heldCount).toBe(0);
    const rest = seqs(journal.read(10_000).entries);
    // Acknowledged on the resend: everything is either delivered (1-10, the rest) or counted.
    expect(rest.length + dropped + again.length).toBe(200);
    journal.close();
  });

  it('held entries go back to disk on close, so a restart sends them again', () => {
    const dir = tempDir();
    const { journal } = open(dir, { 'journal.maxBytes': 16 * 1024, 'journal.segmentBytes': 4096 });
    journal.append([entry(1)], { uncertain: true });
    for (let s = 2; s <= 300; s++) journal.append([entry(s)]);
    expect(journal.heldCount).toBe(1);
    journal.close();
    expect(scanJournal(dir).entries.map((e) => e.entry.seq)).toContain(1);
  });
});

describe('replayer', () => {
  it('does not spin when the journal has unread entries it cannot hand out (replayRate=0)', async () => {
    // A journal that reports a backlog but reads nothing (what a cut segment used to do). With
    // no rate limit the loop once re-read at once, never yielding: the event loop hung. The
    // stub throws past 1000 reads so that a regression fails here instead of hanging.
    let reads = 0;
    const journal = {
      isClosed: false,
      unread: 5,
      unsent: 5,
      heldCount: 0,
      read() {
        if (++reads > 1000) throw new Error('replayer spins on an empty read');
        return { first: 0, entries: [] };
      },
    } as unknown as Journal;
    const replayer = new Replayer(
      journal,
      { mode: 'beside-live', rate: 0 },
      {
        logger: silentLogger(),
        clock: systemClock,
        producer: {} as TelemetryProducer,
        chunkMax: 100,
        connected: () => true,
        mayReplay: () => true,
      },
    );
    replayer.start();
    await new Promise((r) => setTimeout(r, 300));
    await replayer.stop(1000);
    expect(reads).toBeGreaterThan(0);
    expect(reads).toBeLessThan(100);
  });
});
