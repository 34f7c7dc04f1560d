import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCli } from '#shared/config/cli.js';
import { loadConfig } from '#shared/config/load.js';
import { envName, flagName, opt } from '#shared/config/schema.js';
import { parseDuration, parseSize } from '#shared/config/units.js';
import { ConfigError } from '#shared/errors.js';

const schema = {
  'redis.url': opt.string('redis://127.0.0.1:6379', 'url', { env: 'REDIS_URL' }),
  'producer.batchMaxEntries': opt.integer(100, 'batch', { min: 1, max: 1000 }),
  'producer.lingerMs': opt.duration(5, 'linger'),
  'journal.budget': opt.size(1024, 'budget'),
  mode: opt.enum(['local', 'replicated'], 'local', 'mode'),
  tags: opt.list([], 'tags'),
  on: opt.boolean(false, 'on'),
} as const;

describe('config', () => {
  it('derives env names and flags from keys', () => {
    expect(envName('AGENT', 'producer.batchMaxEntries')).toBe('AGENT_PRODUCER_BATCH_MAX_ENTRIES');
    expect(flagName('producer.batchMaxEntries')).toBe('producer-batch-max-entries');
  });

  it('parses durations and sizes', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('1.5m')).toBe(90_000);
    expect(parseDuration('12')).toBe(12);
    expect(parseDuration('soon')).toBeUndefined();
    expect(parseSize('64KiB')).toBe(65_536);
    expect(parseSize('10MB')).toBe(10_000_000);
    expect(parseSize('1 gib')).toBe(2 ** 30);
  });

  it('layers defaults < file < environment < flags', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'c.json');
    writeFileSync(
      file,
      JSON.stringify({ producer: { batchMaxEntries: 10, lingerMs: '1s' }, mode: 'replicated' }),
    );
    const c = loadConfig(schema, 'AGENT', {
      file,
      env: { AGENT_PRODUCER_BATCH_MAX_ENTRIES: '20', REDIS_URL: 'redis://h:1', AGENT_TAGS: 'a, b' },
      flags: { 'producer.batchMaxEntries': '30', on: true },
    });
    expect(c).toEqual({
      'redis.url': 'redis://h:1',
      'producer.batchMaxEntries': 30,
      'producer.lingerMs': 1000,
      'journal.budget': 1024,
      mode: 'replicated',
      tags: ['a', 'b'],
      on: true,
    });
  });

  it('names option, source and expectation on bad values', () => {
    const bad = (sources: Parameters<typeof loadConfig>[2]) => {
      try {
        loadConfig(schema, 'AGENT', sources);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error('expected a ConfigError');
    };
    expect(bad({ env: { AGENT_PRODUCER_BATCH_MAX_ENTRIES: '0' } })).toBe(
      'config option "producer.batchMaxEntries" (from environment AGENT_PRODUCER_BATCH_MAX_ENTRIES) must be >= 1, got 0',
    );
    expect(bad({ flags: { mode: 'fast' } })).toContain('must be one of local, replicated');
    expect(bad({ flags: { 'producer.lingerMs': 'soon' } })).toContain('must be a duration');
    expect(bad({ flags: { nope: '1' } })).toContain('is not a known option');
  });

  it('parses flags generated from the schema and refuses unknown ones', () => {
    const cli = parseCli(schema, ['--producer-batch-max-entries', '7', '--on', 'extra']);
    expect(cli.flags).toEqual({ 'producer.batchMaxEntries': '7', on: true });
    expect(cli.positionals).toEqual(['extra']);
    expect(() => parseCli(schema, ['--bogus'])).toThrow(ConfigError);
  });

  it('takes a boolean flag as users spell it, never as true plus a stray "false"', () => {
    const on = (...argv: string[]) => parseCli(schema, argv).flags.on;
    expect(on('--on')).toBe(true);
    expect(on('--on', 'false')).toBe(false);
    expect(on('--on', 'no')).toBe(false);
    expect(on('--on=false')).toBe(false);
    expect(on('--on=true')).toBe(true);
    expect(on('--no-on')).toBe(false);
    expect(on('--no-on', '--on')).toBe(true);
    expect(on('--on', '--no-on')).toBe(false);
    expect(parseCli(schema, ['--on', 'false']).positionals).toEqual([]);
    expect(() => parseCli(schema, ['--on=maybe'])).toThrow(/--on takes true or false, got "maybe"/);
  });
});
