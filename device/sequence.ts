/**
 * The device's sequence numbers, which must never repeat (they are the
 * idempotency key: a repeated number would be refused as a duplicate).
 *
 * Numbers are reserved in blocks: the file holds the highest number this
 * device may hand out before it writes the file again (fsync + rename, so a
 * crash never leaves a torn file). After a crash the agent resumes above the
 * reservation, leaving a gap of at most one block; after a clean shutdown the
 * exact last number is written and there is no gap.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export class PersistentSequence {
  private last: number;
  private reserved: number;

  private constructor(
    private readonly file: string,
    private readonly block: number,
    start: number,
  ) {
    this.last = start;
    this.reserved = start;
  }

  static open(file: string, block: number): PersistentSequence {
    mkdirSync(dirname(file), { recursive: true });
    let start = 0;
    try {
      const text = readFileSync(file, 'utf8').trim();
      const n = Number(text);
      if (!Number.isSafeInteger(n) || n < 0)
        throw new TypeError(`sequence file ${file} is corrupt: "${text}"`);
      start = n;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const seq = new PersistentSequence(file, block, start);
    seq.reserve(start + block);
    return seq;
  }

  /** The last number handed out (0 before the first). */
  get current(): number {
    return this.last;
  }

  next(): number {
    const n = ++this.last;
    if (n > this.reserved) this.reserve(n + this.block - 1);
    return n;
  }

  /** On clean shutdown: persist the exact last number, so the next start leaves no gap. */
  close(): void {
    this.write(this.last);
  }

  private reserve(upTo: number): void {
    this.write(upTo);
    this.reserved = upTo;
  }

  private write(value: number): void {
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, `${value}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
  }
}
