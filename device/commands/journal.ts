/**
 * The device half of command deduplication: an append-only journal in the
 * data directory, written and fsynced before a non-idempotent handler's side
 * effect (`start`) and after it (`done`, with the result). After a crash:
 *   - `done`   the command took effect: its recorded result is reported, it is not run again;
 *   - `start`  it may have taken effect: it ends `unknown`, never runs twice;
 *   - `failed` the last attempt threw before taking effect: it may be retried.
 * This holds even when the Redis ledger lost its state (a failover without AOF).
 *
 * Bounded: on open, records past their expiry (deadline + retention) are
 * dropped by rewriting the file (tmp + fsync + rename). A torn last line from
 * a crash mid-write is ignored: its record was never acted on, because the
 * side effect follows the fsync.
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

export class CommandJournal {
  private readonly latest = new Map<string, JournalRecord>();
  private fd: number;

  private constructor(
    private readonly file: string,
    records: JournalRecord[],
  ) {
    for (const r of records) this.latest.set(r.i, r);
    this.fd = openSync(file, 'a');
  }

  static open(file: string, now: number): CommandJournal {
    mkdirSync(dirname(file), { recursive: true });
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const latest = new Map<string, JournalRecord>();
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const r = JSON.parse(line) as JournalRecord;
        if (typeof r.i === 'string' && typeof r.p === 'string') latest.set(r.i, r);
      } catch {
        // a torn last line: never acted on (see above)
      }
    }
    const kept = [...latest.values()].filter((r) => r.x > now);
    // Compact: keep only the latest record of commands not yet forgotten.
    const tmp = `${file}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      if (kept.length) writeSync(fd, `${kept.map((r) => JSON.stringify(r)).join('\n')}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    return new CommandJournal(file, kept);
  }

  get(commandId: string): JournalRecord | undefined {
    return this.latest.get(commandId);
  }

  get size(): number {
    return this.latest.size;
  }

  /** Appends a record and waits for it to reach the disk (fdatasync) before returning. */
  append(record: JournalRecord): void {
    writeSync(this.fd, `${JSON.stringify(record)}\n`);
    fdatasyncSync(this.fd);
    this.latest.set(record.i, record);
  }

  close(): void {
    closeSync(this.fd);
  }

  get path(): string {
    return this.file;
  }
}
