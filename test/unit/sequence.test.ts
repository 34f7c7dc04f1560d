import { fstatSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { encodeEnvelope } from '#shared/envelope.js';
import { CorruptStateFileError } from '#shared/errors.js';
import { silentLogger } from '#shared/log.js';
import { Journal } from '../../device/journal/journal.js';
import { journalOptions } from '../../device/journal/options.js';
import { PersistentSequence } from '../../device/sequence.js';

/** fs calls that make a rename durable, in order: renames, and fsyncs of files and of directories. */
const durability: string[] = [];
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const wrapped = {
    ...fs,
    renameSync: (from: Parameters<typeof fs.renameSync>[0], to: Parameters<typeof fs.renameSync>[1]) => {
      durability.push(`rename ${String(to)}`);
      fs.renameSync(from, to);
    },
    fsyncSync: (fd: number) => {
      durability.push(fstatSync(fd).isDirectory() ? 'fsync dir' : 'fsync file');
      fs.fsyncSync(fd);
    },
  };
  return { ...wrapped, default: wrapped };
});

describe('persistent sequence', () => {
  const file = () => join(mkdtempSync(join(tmpdir(), 'seq-')), 'sequence');
  beforeEach(() => {
    durability.length = 0;
  });
  afterEach(() => {
    durability.length = 0;
  });

  it('reserves a block on disk before handing out its numbers', () => {
    const f = file();
    const seq = PersistentSequence.open(f, 10);
    expect(readFileSync(f, 'utf8').trim()).toBe('10');
    for (let i = 1; i <= 10; i++) expect(seq.next()).toBe(i);
    expect(seq.next()).toBe(11);
    expect(readFileSync(f, 'utf8').trim()).toBe('20');
  });

  it('never repeats a number after a crash (resumes above the reservation)', () => {
    const f = file();
    const a = PersistentSequence.open(f, 10);
    for (let i = 0; i < 3; i++) a.next();
    // no close(): a crash
    const b = PersistentSequence.open(f, 10);
    expect(b.next()).toBe(11);
  });

  it('continues without a gap after a clean close', () => {
    const f = file();
    const a = PersistentSequence.open(f, 10);
    for (let i = 0; i < 3; i++) a.next();
    a.close();
    expect(PersistentSequence.open(f, 10).next()).toBe(4);
  });

  it('fsyncs the file, renames it, then fsyncs the directory (a power loss keeps the new reservation)', () => {
    const f = file();
    PersistentSequence.open(f, 10);
    expect(durability).toEqual(['fsync file', `rename ${f}`, 'fsync dir']);
  });

  for (const [what, content] of [
    ['garbage', 'x7\n'],
    ['an empty file', ''],
    ['a negative number', '-5\n'],
  ] as const) {
    it(`a sequence file holding ${what} is a typed error naming the file and what to do`, () => {
      const f = file();
      writeFileSync(f, content);
      let err: unknown;
      try {
        PersistentSequence.open(f, 10);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CorruptStateFileError);
      expect(err).toMatchObject({ code: 'STATE_FILE_CORRUPT', file: f });
      expect((err as Error).message).toContain(f);
      expect((err as Error).message).toMatch(/Write into it a number/);
      expect((err as Error).message).toMatch(/Do not delete it/);
    });
  }
});

describe("the journal's committed file", () => {
  it('is fsynced, renamed, then its directory fsynced', () => {
    const dir = mkdtempSync(join(tmpdir(), 'journal-commit-'));
    const { journal: options } = journalOptions(
      { 'journal.flushInterval': 0, 'journal.commitInterval': 0 },
      dir,
    );
    const journal = Journal.open(options, { logger: silentLogger() });
    journal.append([
      encodeEnvelope({ deviceId: 'dev-c', seq: 1, time: 1_700_000_000_000, type: 'constant', payload: 1 }),
    ]);
    journal.read(10);
    durability.length = 0;
    journal.commit(1);
    const committed = join(dir, 'committed');
    const at = durability.indexOf(`rename ${committed}`);
    expect(at).toBeGreaterThan(0);
    expect(durability[at - 1]).toBe('fsync file');
    expect(durability[at + 1]).toBe('fsync dir');
    journal.close();
  });
});
