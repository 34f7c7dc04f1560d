/**
 * The device's sequence numbers, which must never repeat (they are the
 * idempotency key: a repeated number would be refused as a duplicate).
 *
 * Numbers are reserved in blocks: the file holds the highest number this
 * device may hand out before it writes the file again (fsync, rename and an
 * fsync of the directory, so neither a crash nor a power loss leaves a torn
 * file or brings back an older reservation). After a crash the agent resumes above the
 * reservation, leaving a gap of at most one block; after a clean shutdown the
 * exact last number is written and there is no gap.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CorruptStateFileError } from '#shared/errors.js';
import { writeFileDurably } from './journal/durable-file.js';

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
    let text: string | undefined;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let start = 0;
    if (text !== undefined) {
      // Number('') is 0: an empty file is as corrupt as garbage (starting again at 1 would repeat numbers).
      const n = text.trim() === '' ? Number.NaN : Number(text.trim());
      if (!Number.isSafeInteger(n) || n < 0)
        throw new CorruptStateFileError(
          file,
          text,
          'it must hold the highest sequence number this device may have used. Write into it a number ' +
            'at least that high (the largest `s` of the device in its telemetry stream, plus ' +
            'device.sequenceBlock to be safe) and start again. Do not delete it: numbers would start ' +
            'again at 1 and new telemetry would be refused as duplicates',
        );
      start = n;
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
    writeFileDurably(this.file, `${value}\n`);
  }
}
