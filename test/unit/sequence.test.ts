import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PersistentSequence } from '../../device/sequence.js';

describe('persistent sequence', () => {
  const file = () => join(mkdtempSync(join(tmpdir(), 'seq-')), 'sequence');

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
});
