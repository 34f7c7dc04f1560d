import { expect, it } from 'vitest';
import { type EncodedEnvelope, encodeEnvelope, encodeEnvelopeText } from '#shared/envelope.js';
import { encodeBatch } from '#shared/telemetry/producer.js';
import { decodePayload } from '../../gateway/mapping.js';

/** What the gateway stores for a payload: the reading's JSON text, by whichever path decodePayload took. */
function stored(text: string) {
  const r = decodePayload(Buffer.from(text), 'dev-1');
  const entry =
    r.payloadText !== undefined
      ? encodeEnvelopeText({
          deviceId: 'dev-1',
          seq: r.seq!,
          time: r.time ?? 0,
          type: 't',
          payloadText: r.payloadText,
        })
      : encodeEnvelope({
          deviceId: 'dev-1',
          seq: r.seq ?? 1,
          time: r.time ?? 0,
          type: 't',
          payload: r.payload,
        });
  return { seq: r.seq, time: r.time, fast: r.payloadText !== undefined, payload: entry.payload };
}

it('keeps the device text of a reading less seq and time: the same JSON as serialising the rest', () => {
  const reading = {
    seq: 1765000000001,
    time: 1765000000123,
    lat: 52.52,
    ph: 'out "bound"',
    n: { a: [1, 2] },
  };
  const s = stored(JSON.stringify(reading));
  const { seq, time, ...rest } = reading;
  expect(s).toEqual({ seq, time, fast: true, payload: JSON.stringify(rest) });
  expect(stored('{"seq":7,"time":0}')).toEqual({ seq: 7, time: 0, fast: true, payload: '{}' });
});

it('keeps the device text of a reading that leaves the time to the gateway (seq alone in front)', () => {
  expect(stored('{"seq":5,"v":21.5,"t":3,"timeout":"x"}')).toEqual({
    seq: 5,
    time: undefined,
    fast: true,
    payload: '{"v":21.5,"t":3,"timeout":"x"}',
  });
  expect(stored('{"seq":7}')).toEqual({ seq: 7, time: undefined, fast: true, payload: '{}' });
});

it('serialises the rest itself when the text is in another form or names seq or time twice', () => {
  const cases: Array<[string, Record<string, unknown>, number, number]> = [
    ['{ "seq": 5, "time": 9, "a": 1 }', { a: 1 }, 5, 9],
    ['{"time":9,"seq":5,"a":1}', { a: 1 }, 5, 9],
    ['{"seq":5,"time":9,"a":1,"seq":6}', { a: 1 }, 6, 9],
    ['{"seq":5,"time":9,"a":"x","time":10}', { a: 'x' }, 5, 10],
    ['{"seq":5,"time":9,"a":1,"seq":5}', { a: 1 }, 5, 9],
    ['{"seq":5,"a":1,"time":9}', { a: 1 }, 5, 9],
    ['{"seq":5e0,"time":9,"a":1}', { a: 1 }, 5, 9],
  ];
  for (const [text, rest, seq, time] of cases) {
    const s = stored(text);
    expect(s.fast, text).toBe(false);
    expect(JSON.parse(s.payload), text).toEqual(rest);
    expect(s.seq, text).toBe(seq);
    expect(s.time, text).toBe(time);
  }
});

it('applies the payload size limit on the kept text as on a serialised one', () => {
  const big = JSON.stringify({ seq: 1, time: 1, s: 'é'.repeat(3000) });
  const r = decodePayload(Buffer.from(big), 'dev-1');
  expect(() =>
    encodeEnvelopeText(
      { deviceId: 'dev-1', seq: 1, time: 1, type: 't', payloadText: r.payloadText! },
      { maxPayloadBytes: 5000 },
    ),
  ).toThrow(/over the 5000-byte limit/);
  expect(() =>
    encodeEnvelope(
      { deviceId: 'dev-1', seq: 1, time: 1, type: 't', payload: { s: 'é'.repeat(3000) } },
      { maxPayloadBytes: 5000 },
    ),
  ).toThrow(/over the 5000-byte limit/);
});

it('writes the batch argument as JSON rows of strings, escaping what needs it', () => {
  const entries: EncodedEnvelope[] = [
    {
      deviceId: 'a-1',
      seq: 12,
      time: 1765000000123,
      type: 'gps',
      version: 1,
      payload: '{"x":"q\\"uote","u":"é\\u2028"}',
    },
    { deviceId: 'b@x:y', seq: 1, time: 0, type: 'n.t-2', version: 1, payload: '3.5' },
  ];
  const rows = entries.map((e) => [
    e.deviceId,
    String(e.seq),
    String(e.time),
    e.type,
    String(e.version),
    e.payload,
  ]);
  expect(encodeBatch(entries)).toBe(JSON.stringify(rows));
  expect(encodeBatch([])).toBe('[]');
});
