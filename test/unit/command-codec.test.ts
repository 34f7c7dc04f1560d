/** The command codec: what the worker accepts and what it rejects, field by field. */
import { describe, expect, it } from 'vitest';
import {
  COMMAND_FIELD,
  commandFields,
  decodeCommand,
  decodeResult,
  resultFields,
  validateCommand,
} from '#shared/commands/codec.js';
import { ValidationError } from '#shared/errors.js';

const good = { id: 'c-1', name: 'ping', args: { a: 1 }, issuedAt: 1000, deadline: 2000 };

function fieldsWith(overrides: Record<string, string | undefined>): string[] {
  const base = commandFields(validateCommand(good));
  const map = new Map<string, string>();
  for (let i = 0; i < base.length; i += 2) map.set(base[i]!, base[i + 1]!);
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) map.delete(k);
    else map.set(k, v);
  }
  return [...map].flat();
}

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ValidationError) return err.field;
    throw err;
  }
  throw new Error('did not throw');
}

describe('command codec', () => {
  it('round-trips a command and defaults the correlation id to the id', () => {
    const c = decodeCommand(commandFields(validateCommand(good)));
    expect(c).toEqual({ ...good, correlationId: 'c-1', version: 1 });
  });

  it('names the bad field for missing fields, bad JSON and wrong types', () => {
    expect(fieldOf(() => decodeCommand(fieldsWith({ [COMMAND_FIELD.name]: undefined })))).toBe('name');
    expect(fieldOf(() => decodeCommand(fieldsWith({ [COMMAND_FIELD.id]: undefined })))).toBe('id');
    expect(fieldOf(() => decodeCommand(fieldsWith({ [COMMAND_FIELD.args]: '{nope' })))).toBe('args');
    expect(fieldOf(() => decodeCommand(fieldsWith({ [COMMAND_FIELD.args]: '[1,2]' })))).toBe('args');
    expect(fieldOf(() => decodeCommand(fieldsWith({ [COMMAND_FIELD.deadline]: 'soon' })))).toBe('deadline');
    expect(fieldOf(() => decodeCommand(fieldsWith({ [COMMAND_FIELD.id]: 'has space' })))).toBe('id');
    expect(fieldOf(() => decodeCommand(fieldsWith({ [COMMAND_FIELD.version]: '9' })))).toBe('version');
    expect(fieldOf(() => validateCommand({ ...good, deadline: 10 }))).toBe('deadline');
    expect(fieldOf(() => validateCommand({ ...good, args: { big: 'x'.repeat(9000) } }))).toBe('args');
  });

  it('round-trips a result, leaving absent optional fields out', () => {
    const r = {
      commandId: 'c-1',
      deviceId: 'dev-1',
      status: 'succeeded' as const,
      name: 'ping',
      finishedAt: 5,
      attempts: 1,
      output: { pong: true },
      version: 1,
    };
    const fields = resultFields(r);
    expect(fields).not.toContain('ec');
    expect(decodeResult(fields)).toMatchObject(r);
    expect(fieldOf(() => resultFields({ ...r, status: 'queued' as never }))).toBe('status');
  });
});
