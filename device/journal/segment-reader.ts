/**
 * Reads a segment file's records through a bounded window, never the whole
 * file: segments may be large (journal.segmentBytes up to 256 MiB), and memory
 * must stay bounded during an outage of any length (docs/store-and-forward.md,
 * "Memory"). The window holds READ_CHUNK bytes, or one record plus READ_CHUNK
 * when a record is larger; a record is at most MAX_BODY, so the window is at
 * most about 1.3 MiB.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { EncodedEnvelope } from '#shared/envelope.js';
import { type DecodeResult, decodeRecord, HEADER_BYTES, MAX_BODY } from './record.js';

/** Bytes read from a segment at a time. */
export const READ_CHUNK = 256 * 1024;
/** The largest window a reader holds. */
export const MAX_WINDOW = READ_CHUNK + HEADER_BYTES + MAX_BODY;

export class SegmentReader {
  private readonly fd: number;
  private buf: Buffer = Buffer.alloc(0);
  /** File offset of buf[0]. */
  private start = 0;

  /** Reads `path` up to byte `size` (the whole records known to be there, or the file's length). */
  constructor(
    path: string,
    private readonly size: number,
  ) {
    this.fd = openSync(path, 'r');
  }

  /** Decodes the record starting at file offset `at`. */
  decode(at: number): DecodeResult {
    if (!this.cover(at, HEADER_BYTES)) return { kind: 'incomplete' };
    let r = decodeRecord(this.buf, at - this.start);
    if (r.kind === 'incomplete') {
      // The header is in the window and its length plausible: widen the window to the whole record.
      const need = HEADER_BYTES + this.buf.readUInt32LE(at - this.start);
      if (!this.cover(at, need)) return { kind: 'incomplete' };
      r = decodeRecord(this.buf, at - this.start);
    }
    return r;
  }

  /**
   * Counts the whole records after a bad one at `from`, found by looking for
   * the next offset where a record decodes (checksum included), again after
   * each further bad stretch: what cutting a segment at `from` loses besides
   * the bad record.
   */
  recordsAfter(from: number): number {
    let n = 0;
    let o = from + 1;
    while (o + HEADER_BYTES <= this.size) {
      const r = this.decode(o);
      if (r.kind === 'record') {
        n++;
        o += r.size;
      } else o++;
    }
    return n;
  }

  /**
   * Calls `each` for every whole record from offset `from` on, in order, until
   * it returns false (after that record) or a record does not decode. `end`
   * is the offset after the last record taken; `problem` says why decoding
   * stopped, if it did.
   */
  scan(
    from: number,
    each: (entry: EncodedEnvelope, offset: number) => boolean,
  ): { end: number; problem: string | undefined } {
    let o = from;
    while (o < this.size) {
      const r = this.decode(o);
      if (r.kind !== 'record') return { end: o, problem: r.kind === 'incomplete' ? 'torn record' : r.reason };
      const more = each(r.entry, o);
      o += r.size;
      if (!more) break;
    }
    return { end: o, problem: undefined };
  }

  close(): void {
    closeSync(this.fd);
  }

  /** Makes the window hold [at, at + need); false when the file ends before. */
  private cover(at: number, need: number): boolean {
    if (at + need > this.size) return false;
    if (at >= this.start && at + need <= this.start + this.buf.length) return true;
    const length = Math.min(need + READ_CHUNK, this.size - at);
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.fd, buf, got, length - got, at + got);
      if (n === 0) break;
      got += n;
    }
    this.buf = got === length ? buf : buf.subarray(0, got);
    this.start = at;
    return got >= need;
  }
}

/** Runs `fn` with a reader of `path` up to `size`, closing it afterwards. */
export function withSegmentReader<T>(path: string, size: number, fn: (reader: SegmentReader) => T): T {
  const reader = new SegmentReader(path, size);
  try {
    return fn(reader);
  } finally {
    reader.close();
  }
}
