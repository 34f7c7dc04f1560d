import { describe, expect, it } from 'vitest';
import { decodeEnvelope, encodeEnvelope, envelopeFields } from '#shared/envelope.js';
import { ValidationError } from '#shared/errors.js';

const good = {
  deviceId: 'pi-07',
  seq: 3,
  time: 1_700_000_000_000,
  type: 'temperature',
  payload: { c: 21.5 },
};

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof ValidationError) return err.field;
    throw err;
  }
  return undefined;
}

describe('telemetry envelope', () => {
  it('round-trips through stream fields', () => {
    const encoded = encodeEnvelope(good);
    expect(decodeEnvelope(envelopeFields(encoded))).toEqual({ ...good, version: 1 });
  });

  it('accepts a plain number payload', () => {
    expect(encodeEnvelope({ ...good, payload: 42.5 }).payload).toBe('42.5');
  });

  it.each([
    ['deviceId', { ...good, deviceId: 'bad{tag}' }],
    ['deviceId', { ...good, deviceId: '' }],
    ['deviceId', { ...good, deviceId: 'x'.repeat(65) }],
    ['seq', { ...good, seq: 0 }],
    ['seq', { ...good, seq: 1.5 }],
    ['seq', { ...good, seq: '3' }],
    ['time', { ...good, time: -1 }],
    ['type', { ...good, type: 'has space' }],
    ['version', { ...good, version: 99 }],
    ['payload', { ...good, payload: 'text' }],
    ['payload', { ...good, payload: [1, 2] }],
    ['payload', { ...good, payload: Number.NaN }],
    ['payload', { ...good, payload: { big: 'x'.repeat(9000) } }],
    ['envelope', null],
  ])('names the bad field %s', (field, input) => {
    expect(fieldOf(() => encodeEnvelope(input))).toBe(field);
  });

  it('enforces a configurable payload limit', () => {
    expect(
      fieldOf(() => encodeEnvelope({ ...good, payload: { s: 'x'.repeat(100) } }, { maxPayloadBytes: 50 })),
    ).toBe('payload');
  });

  it('rejects stream entries with missing fields or bad JSON, naming the field', () => {
    const fields = envelopeFields(encodeEnvelope(good));
    expect(fieldOf(() => decodeEnvelope(fields.slice(2)))).toBe('deviceId');
    const badJson = [...fields.slice(0, -1), '{oops'];
    expect(fieldOf(() => decodeEnvelope(badJson))).toBe('payload');
  });
});
