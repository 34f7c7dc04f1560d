/**
 * The device's command journal (device/commands/journal.ts) stays bounded
 * while the agent runs: superseded and expired records are rewritten away,
 * and what is remembered survives a reopen.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { CommandJournal } from '../../device/commands/journal.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function journalFile(): string {
  const d = mkdtempSync(join(tmpdir(), 'cmd-journal-test-'));
  dirs.push(d);
  return join(d, 'commands.journal');
}

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);

it('rewrites the file once superseded records pass the size limit; the latest record of each survives', () => {
  const file = journalFile();
  let now = 1_000;
  const clock = { now: () => now };
  const j = CommandJournal.open(file, now, { clock, compactBytes: 4096, compactIntervalMs: 3_600_000 });
  const result = JSON.stringify(['s', 'succeeded', 'o', 'x'.repeat(100)]);
  for (let n = 0; n < 2000; n++) {
    const i = `cmd-${n}`;
    j.append({ i, p: 'start', a: 1, x: now + 60_000 });
    j.append({ i, p: 'done', a: 1, x: now + 60_000, r: result });
    now++;
  }
  // 2,000 live `done` records, each written after a superseded `start`: without rewrites 4,000 lines.
  expect(j.size).toBe(2000);
  expect(lines(file).length).toBeLessThan(3300);
  expect(statSync(file).size).toBe(j.fileBytes);
  j.close();
  const again = CommandJournal.open(file, now);
  expect(again.size).toBe(2000);
  expect(again.get('cmd-0')).toMatchObject({ p: 'done', r: result });
  expect(again.get('cmd-1999')).toMatchObject({ p: 'done' });
  again.close();
});

it('forgets expired records from memory and the file while it runs, not only when opened', () => {
  const file = journalFile();
  let now = 1_000;
  const clock = { now: () => now };
  const j = CommandJournal.open(file, now, { clock, compactBytes: 1 << 20, compactIntervalMs: 10_000 });
  for (let n = 0; n < 500; n++) j.append({ i: `old-${n}`, p: 'done', a: 1, x: now + 5_000, r: '[]' });
  expect(j.size).toBe(500);
  now += 20_000; // past their expiry and the rewrite interval
  j.append({ i: 'new', p: 'start', a: 1, x: now + 5_000 });
  expect(j.size).toBe(1);
  expect(j.get('old-0')).toBeUndefined();
  expect(lines(file)).toHaveLength(1);
  // Appends after a rewrite go to the new file (the descriptor follows the rename).
  j.append({ i: 'new', p: 'done', a: 1, x: now + 5_000, r: '[]' });
  j.close();
  const again = CommandJournal.open(file, now);
  expect(again.size).toBe(1);
  expect(again.get('new')?.p).toBe('done');
  again.close();
});
