/**
 * The device half of command deduplication: an append-only journal in the
 * data directory, written and fsynced before a non-idempotent handler's side
 * effect (`start`) and after it (`done`, with the result). After a crash:
 *   - `done`   the command took effect: its recorded result is reported, it is not run again;
 *   - `start`  it may have taken effect: it ends `unknown`, never runs twice;
 *   - `failed` the last attempt threw before taking effect: it may be retried.
 * This holds even when the Redis ledger lost its state (a failover without AOF).
 *
 * Bounded, on open and while the agent runs: records past their expiry
 * (deadline + retention) are forgotten, and the file is rewritten with only
 * the latest record of each remembered command (tmp + fsync + rename + fsync
 * of the directory, so the rename itself survives a power loss). A rewrite
 * happens when the file holds more superseded bytes than
 * max(compactBytes, its live bytes) — so its cost stays proportional to what
 * was appended — and at least every compactInterval while records are
 * appended, which is also when expired records leave memory. A torn last line
 * from a crash mid-write is ignored: its record was never acted on, because
 * the side effect follows the fsync.
 */
import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { type Clock, systemClock } from '#shared/clock.js';

export type JournalPhase = 'start' | 'failed' | 'done';

export interface JournalRecord {
  /** Command id. */
  i: string;
  /** Phase. */
  p: JournalPhase;
  /** Attempt number. */
  a: number;
  /** Forget after (ms since the epoch). */
  x: number;
  /** For `done`: the terminal result fields (JSON array text). */
  r?: string;
}

export interface CommandJournalOptions {
  /** Rewrite once superseded records take more than this many bytes (or more than the live ones). */
  compactBytes: number;
  /** Rewrite, forgetting expired records, at least this often while records are appended. */
  compactIntervalMs: number;
  clock: Pick<Clock, 'now'>;
}

export const DEFAULT_COMMAND_JOURNAL_OPTIONS: CommandJournalOptions = {
  // A non-idempotent command writes two or three records of ~100-400 bytes: a rewrite per few thousand.
  compactBytes: 1024 * 1024,
  compactIntervalMs: 10 * 60_000,
  clock: systemClock,
};

const line = (r: JournalRecord) => `${JSON.stringify(r)}\n`;

/** fsync of the directory: makes a rename in it durable (rename(2) alone may be lost on power loss). */
function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class CommandJournal {
  private readonly latest = new Map<string, JournalRecord>();
  private readonly options: CommandJournalOptions;
  private fd = -1;
  /** Bytes in the file now, and in it right after the last rewrite (all live then). */
  private bytes = 0;
  private liveBytes = 0;
  private nextCompactAt = 0;
  /** Rewrites that failed (the journal went on appending to the old file; retried later). */
  compactionFailures = 0;

  private constructor(
    private readonly file: string,
    records: Iterable<JournalRecord>,
    now: number,
    options: Partial<CommandJournalOptions>,
  ) {
    this.options = { ...DEFAULT_COMMAND_JOURNAL_OPTIONS, ...options };
    for (const r of records) this.latest.set(r.i, r);
    this.compact(now);
  }

  static open(file: string, now: number, options: Partial<CommandJournalOptions> = {}): CommandJournal {
    mkdirSync(dirname(file), { recursive: true });
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const latest = new Map<string, JournalRecord>();
    for (const l of text.split('\n')) {
      if (!l) continue;
      try {
        const r = JSON.parse(l) as JournalRecord;
        if (typeof r.i === 'string' && typeof r.p === 'string') latest.set(r.i, r);
      } catch {
        // a torn last line: never acted on (see above)
      }
    }
    return new CommandJournal(file, latest.values(), now, options);
  }

  get(commandId: string): JournalRecord | undefined {
    return this.latest.get(commandId);
  }

  /** Commands remembered (in memory). */
  get size(): number {
    return this.latest.size;
  }

  /** Bytes in the journal file. */
  get fileBytes(): number {
    return this.bytes;
  }

  /** Appends a record and waits for it to reach the disk (fdatasync) before returning. */
  append(record: JournalRecord): void {
    const text = line(record);
    writeSync(this.fd, text);
    fdatasyncSync(this.fd);
    this.bytes += Buffer.byteLength(text);
    this.latest.set(record.i, record);
    const now = this.options.clock.now();
    const superseded = this.bytes - this.liveBytes;
    if (superseded > Math.max(this.options.compactBytes, this.liveBytes) || now >= this.nextCompactAt) {
      try {
        this.compact(now);
      } catch {
        // The record above is already durable; a failed rewrite only postpones the bound.
        this.compactionFailures++;
        this.liveBytes = this.bytes;
        this.nextCompactAt = now + this.options.compactIntervalMs;
      }
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  get path(): string {
    return this.file;
  }

  /** Forgets expired records and rewrites the file with the latest record of each remaining command. */
  private compact(now: number): void {
    for (const [id, r] of this.latest) if (r.x <= now) this.latest.delete(id);
    let text = '';
    for (const r of this.latest.values()) text += line(r);
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      if (text) writeSync(fd, text);
      fsyncSync(fd);
      renameSync(tmp, this.file);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    // The tmp descriptor now names the journal itself: appends continue on it, with no window
    // in which a record could go to the replaced file.
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = fd;
    this.bytes = this.liveBytes = Buffer.byteLength(text);
    this.nextCompactAt = now + this.options.compactIntervalMs;
    fsyncDir(dirname(this.file));
  }
}
