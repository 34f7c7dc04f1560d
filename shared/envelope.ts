/**
 * The telemetry envelope and its one codec. Stream entries carry flat, short
 * fields (see FIELD) so entries stay small; nothing else in the code base
 * parses a telemetry entry by hand.
 */
import { ValidationError } from './errors.js';
import { DEVICE_ID_PATTERN } from './keys.js';

export const SCHEMA_VERSION = 1;

export type Payload = number | { readonly [key: string]: unknown };

export interface TelemetryEnvelope {
  /** Device id; also decides the partition. */
  readonly deviceId: string;
  /** Device sequence number: positive, never repeats for a device (idempotency key). */
  readonly seq: number;
  /** Device time, milliseconds since the epoch, as the device's clock saw it. */
  readonly time: number;
  /** Reading type, e.g. "temperature", "gps". */
  readonly type: string;
  /** Envelope schema version. */
  readonly version: number;
  readonly payload: Payload;
}

/** Stream field names. Short on purpose: they are stored in every entry. */
export const FIELD = { deviceId: 'd', seq: 's', time: 't', type: 'k', version: 'v', payload: 'p' } as const;

export const TYPE_PATTERN = /^[A-Za-z0-9_.-]{1,32}$/;

export interface EnvelopeLimits {
  /** Largest encoded payload in bytes. */
  maxPayloadBytes: number;
}

export const DEFAULT_ENVELOPE_LIMITS: EnvelopeLimits = { maxPayloadBytes: 8192 };

/** An envelope ready to append: validated, with the payload already serialised. */
export interface EncodedEnvelope {
  readonly deviceId: string;
  readonly seq: number;
  readonly time: number;
  readonly type: string;
  readonly version: number;
  /** JSON text of the payload. */
  readonly payload: string;
}

function requireInteger(field: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new ValidationError(field, `must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function requireMatch(field: string, value: unknown, pattern: RegExp): string {
  if (typeof value !== 'string' || !pattern.test(value)) {
    throw new ValidationError(field, `must match ${pattern}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Validates an envelope from any source (agent, MQTT payload, replayed journal)
 * and serialises its payload. Throws ValidationError naming the bad field.
 */
export function encodeEnvelope(
  input: unknown,
  limits: EnvelopeLimits = DEFAULT_ENVELOPE_LIMITS,
): EncodedEnvelope {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ValidationError('envelope', 'must be an object');
  }
  const e = input as Record<string, unknown>;
  const deviceId = requireMatch('deviceId', e.deviceId, DEVICE_ID_PATTERN);
  const seq = requireInteger('seq', e.seq, 1);
  const time = requireInteger('time', e.time, 0);
  const type = requireMatch('type', e.type, TYPE_PATTERN);
  const version = e.version === undefined ? SCHEMA_VERSION : requireInteger('version', e.version, 1);
  if (version > SCHEMA_VERSION) {
    throw new ValidationError(
      'version',
      `schema version ${version} is newer than this build understands (${SCHEMA_VERSION})`,
    );
  }
  const payload = encodePayload(e.payload, limits);
  return { deviceId, seq, time, type, version, payload };
}

/**
 * As encodeEnvelope, for a payload whose JSON text the caller has already
 * (it parsed that text, and it is a JSON object): the fields are validated
 * the same way and the size limit applies, but nothing is serialised again.
 */
export function encodeEnvelopeText(
  input: { deviceId: string; seq: number; time: number; type: string; payloadText: string },
  limits: EnvelopeLimits = DEFAULT_ENVELOPE_LIMITS,
): EncodedEnvelope {
  const deviceId = requireMatch('deviceId', input.deviceId, DEVICE_ID_PATTERN);
  const seq = requireInteger('seq', input.seq, 1);
  const time = requireInteger('time', input.time, 0);
  const type = requireMatch('type', input.type, TYPE_PATTERN);
  const payload = input.payloadText;
  checkPayloadSize(payload, limits);
  return { deviceId, seq, time, type, version: SCHEMA_VERSION, payload };
}

function checkPayloadSize(text: string, limits: EnvelopeLimits): void {
  // Each UTF-16 unit is at most 3 bytes of UTF-8: most payloads need no count at all.
  if (text.length * 3 <= limits.maxPayloadBytes) return;
  const bytes = Buffer.byteLength(text);
  if (bytes > limits.maxPayloadBytes) {
    throw new ValidationError('payload', `is ${bytes} bytes, over the ${limits.maxPayloadBytes}-byte limit`);
  }
}

function encodePayload(payload: unknown, limits: EnvelopeLimits): string {
  const isNumber = typeof payload === 'number' && Number.isFinite(payload);
  const isObject = typeof payload === 'object' && payload !== null && !Array.isArray(payload);
  if (!isNumber && !isObject) {
    throw new ValidationError('payload', 'must be a finite number or a JSON object');
  }
  const text = JSON.stringify(payload);
  checkPayloadSize(text, limits);
  return text;
}

/** Flat stream fields, in the order XADD takes them. */
export function envelopeFields(e: EncodedEnvelope): string[] {
  return [
    FIELD.deviceId,
    e.deviceId,
    FIELD.seq,
    String(e.seq),
    FIELD.time,
    String(e.time),
    FIELD.type,
    e.type,
    FIELD.version,
    String(e.version),
    FIELD.payload,
    e.payload,
  ];
}

/** Approximate bytes an entry takes on the wire; used for batch byte limits. */
export function encodedSize(e: EncodedEnvelope): number {
  return e.deviceId.length + e.type.length + e.payload.length + 40;
}

/**
 * Decodes stream fields into an envelope whose payload stays JSON text, for
 * consumers that store or forward it (the state projection): no parse and
 * re-serialise per entry. Checks that every field is there and the numbers are
 * numbers; throws ValidationError naming the field otherwise.
 */
export function decodeEncodedEnvelope(fields: readonly string[]): EncodedEnvelope {
  let deviceId: string | undefined;
  let seq: string | undefined;
  let time: string | undefined;
  let type: string | undefined;
  let version: string | undefined;
  let payload: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const v = fields[i + 1]!;
    switch (fields[i]) {
      case FIELD.deviceId:
        deviceId = v;
        break;
      case FIELD.seq:
        seq = v;
        break;
      case FIELD.time:
        time = v;
        break;
      case FIELD.type:
        type = v;
        break;
      case FIELD.version:
        version = v;
        break;
      case FIELD.payload:
        payload = v;
        break;
    }
  }
  if (deviceId === undefined) throw new ValidationError('deviceId', 'is missing from the stream entry');
  if (type === undefined) throw new ValidationError('type', 'is missing from the stream entry');
  if (payload === undefined) throw new ValidationError('payload', 'is missing from the stream entry');
  return {
    deviceId,
    seq: entryInteger('seq', seq),
    time: entryInteger('time', time),
    type,
    version: entryInteger('version', version),
    payload,
  };
}

/** A stream entry's integer field (a function of its own: no closure made per entry decoded). */
function entryInteger(name: string, v: string | undefined): number {
  const n = v === undefined ? Number.NaN : Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new ValidationError(
      name,
      v === undefined ? 'is missing from the stream entry' : `is not an integer: ${v}`,
    );
  return n;
}

/** Decodes stream fields ([k1, v1, k2, v2, ...]) into an envelope; throws ValidationError on bad entries. */
export function decodeEnvelope(fields: readonly string[]): TelemetryEnvelope {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  const get = (name: keyof typeof FIELD): string => {
    const v = map.get(FIELD[name]);
    if (v === undefined) throw new ValidationError(name, 'is missing from the stream entry');
    return v;
  };
  let payload: Payload;
  try {
    payload = JSON.parse(get('payload')) as Payload;
  } catch {
    throw new ValidationError('payload', 'is not valid JSON');
  }
  return {
    deviceId: get('deviceId'),
    seq: Number(get('seq')),
    time: Number(get('time')),
    type: get('type'),
    version: Number(get('version')),
    payload,
  };
}
