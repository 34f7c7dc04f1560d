/**
 * The codecs beside the command codec: the ledger's fields and stored result,
 * the dead letter, and the MQTT command/result messages of devices that run no
 * agent. Each round-trips, and bad input gets a ValidationError (or, for a
 * reply, a result the gateway can reject with its reason), never a crash.
 */
import { describe, expect, it } from 'vitest';
import { commandFields, resultFields, validateCommand } from '#shared/commands/codec.js';
import { deadLetterFields, decodeDeadLetter } from '#shared/commands/deadletter.js';
import {
  decodeLedger,
  decodeStoredResult,
  encodeStoredResult,
  LEDGER_FIELD,
  ledgerHash,
} from '#shared/commands/ledger.js';
import {
  commandMessageId,
  decodeCommandMessage,
  decodeResultMessage,
  encodeCommandMessage,
  encodeResultMessage,
} from '#shared/commands/mqtt-messages.js';
import { ValidationError } from '#shared/errors.js';

const command = validateCommand({ id: 'c-1', name: 'ping', args: { a: 1 }, issuedAt: 1000, deadline: 2000 });
const result = {
  commandId: 'c-1',
  deviceId: 'dev-1',
  status: 'failed' as const,
  name: 'ping',
  entryId: '1-0',
  finishedAt: 1500,
  attempts: 3,
  errorClass: 'Boom',
  message: 'it broke',
  version: 1,
};

describe('ledger codec', () => {
  it('round-trips the stored result and decodes a terminal ledger with it', () => {
    const fields = resultFields(result);
    const text = encodeStoredResult(fields);
    expect(decodeStoredResult(text)).toEqual(fields);
    const view = decodeLedger({
      [LEDGER_FIELD.status]: 'failed',
      [LEDGER_FIELD.attempts]: '3',
      [LEDGER_FIELD.deliveredAt]: '1100',
      [LEDGER_FIELD.result]: text,
    });
    expect(view).toMatchObject({ status: 'failed', attempts: 3, deliveredAt: 1100, stored: fields });
    expect(view.result).toMatchObject({ commandId: 'c-1', status: 'failed', attempts: 3 });
    expect(decodeLedger(ledgerHash(['queued', null, null, null]))).toEqual({
      status: 'queued',
      attempts: 0,
      queuedAt: undefined,
      deliveredAt: undefined,
      startedAt: undefined,
    });
  });

  it('an empty or unknown ledger is none; a stored result that is not an array of strings is refused', () => {
    expect(decodeLedger({}).status).toBe('none');
    expect(decodeLedger({ st: 'weird' }).status).toBe('none');
    for (const bad of ['not json', '{"a":1}', '[1,2]', '["odd"]'])
      expect(() => decodeStoredResult(bad), bad).toThrow(ValidationError);
  });
});

describe('dead-letter codec', () => {
  it('decodes what it encodes, the original command with it', () => {
    const fields = deadLetterFields({
      deviceId: 'dev-1',
      stream: 'iot:{dev-1}:commands',
      entryId: '1-0',
      fields: commandFields(command),
      result,
    }).map(String);
    const dead = decodeDeadLetter('9-0', fields);
    expect(dead).toMatchObject({
      id: '9-0',
      deviceId: 'dev-1',
      commandId: 'c-1',
      source: 'iot:{dev-1}:commands',
      entryId: '1-0',
      errorClass: 'Boom',
      message: 'it broke',
      attempts: 3,
      command,
    });
    expect(dead.problem).toBeUndefined();
  });

  it('an original that no longer decodes is named as the problem, not thrown', () => {
    const dead = decodeDeadLetter('9-0', ['d', 'dev-1', 'i', 'c-1', 'o', '{"i":"c-1"}']);
    expect(dead.command).toBeUndefined();
    expect(dead.problem).toMatch(/name/);
    expect(decodeDeadLetter('9-1', ['d', 'dev-1', 'o', 'nope']).problem).toBeDefined();
  });
});

describe('MQTT command messages', () => {
  it('round-trips a command message, and reads its id back for a PUBACK', () => {
    const payload = encodeCommandMessage(command);
    expect(decodeCommandMessage(payload)).toEqual({
      id: 'c-1',
      name: 'ping',
      args: { a: 1 },
      deadline: 2000,
      issuedAt: 1000,
    });
    expect(commandMessageId(payload)).toBe('c-1');
    expect(commandMessageId(Buffer.from('garbage'))).toBeUndefined();
  });

  it('refuses a command message without id or name; a missing deadline never expires it', () => {
    for (const bad of ['nope', '[]', '{"name":"ping"}', '{"id":5,"name":"ping"}'])
      expect(() => decodeCommandMessage(bad), bad).toThrow(ValidationError);
    expect(decodeCommandMessage('{"id":"x","name":"ping","args":[1]}')).toMatchObject({
      args: {},
      deadline: Number.POSITIVE_INFINITY,
    });
  });

  it('round-trips a result message; an unknown status or a missing id is reported, not thrown', () => {
    const reply = { id: 'c-1', status: 'succeeded' as const, output: { pong: true } };
    expect(decodeResultMessage(encodeResultMessage(reply))).toEqual({
      ...reply,
      errorClass: undefined,
      message: undefined,
    });
    expect(decodeResultMessage('{"id":"c-1","status":"failed"}').errorClass).toBe('Error');
    expect(decodeResultMessage('{"id":"c-1","status":"rejected","output":1}').output).toBeUndefined();
    expect(decodeResultMessage('{"status":"done"}')).toMatchObject({ id: '', status: undefined });
    expect(() => decodeResultMessage('not json')).toThrow(/not JSON/);
    expect(() => decodeResultMessage('"text"')).toThrow(/not a JSON object/);
  });
});
