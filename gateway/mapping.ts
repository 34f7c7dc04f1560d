/**
 * Topic templates and payload decoding: MQTT publish -> telemetry reading.
 *
 * A template such as `devices/{deviceId}/telemetry/{type}` matches topics with
 * the same number of levels, literal levels equal; `{deviceId}` and `{type}`
 * capture one level each. Payloads may be the project's envelope (an object
 * with `payload`), a plain JSON object, or a plain number; see docs/gateway.md.
 */
import { ConfigError } from '#shared/errors.js';
import { DEVICE_ID_PATTERN } from '#shared/keys.js';

export class TopicTemplate {
  private readonly levels: readonly string[];
  private readonly deviceIndex: number;
  private readonly typeIndex: number;

  constructor(
    readonly template: string,
    option: string,
  ) {
    this.levels = template.split('/');
    this.deviceIndex = this.levels.indexOf('{deviceId}');
    this.typeIndex = this.levels.indexOf('{type}');
    if (this.deviceIndex < 0)
      throw new ConfigError(option, 'config', `"${template}" must contain {deviceId}`);
    for (const level of this.levels) {
      if (
        level.includes('+') ||
        level.includes('#') ||
        (level.includes('{') && !/^\{(deviceId|type)\}$/.test(level))
      )
        throw new ConfigError(
          option,
          'config',
          `"${template}": a level is either literal or exactly {deviceId} / {type}, without wildcards`,
        );
    }
  }

  /** Device id and type of a topic, or undefined when the topic does not match. */
  match(topic: string): { deviceId: string; type: string | undefined } | undefined {
    // Walks the levels in place: no array of levels per publish (this runs on every one).
    let deviceId: string | undefined;
    let type: string | undefined;
    let start = 0;
    for (let i = 0; i < this.levels.length; i++) {
      const slash = topic.indexOf('/', start);
      const last = i === this.levels.length - 1;
      const moreLevels = slash >= 0;
      // As many levels as the template: the last one runs to the end, the others to a '/'.
      if (last === moreLevels) return undefined;
      const end = last ? topic.length : slash;
      if (i === this.deviceIndex) deviceId = topic.slice(start, end);
      else if (i === this.typeIndex) type = topic.slice(start, end);
      else {
        const literal = this.levels[i]!;
        if (end - start !== literal.length || !topic.startsWith(literal, start)) return undefined;
      }
      start = end + 1;
    }
    if (!deviceId) return undefined;
    return { deviceId, type };
  }

  /** The topic of one device (types are not filled in). */
  topicFor(deviceId: string): string {
    return this.levels.map((l) => (l === '{deviceId}' ? deviceId : l)).join('/');
  }

  /** A subscription filter matching every device: {deviceId} and {type} become `+`. */
  filter(): string {
    return this.levels.map((l) => (l.startsWith('{') ? '+' : l)).join('/');
  }
}

/** The reading decoded from a payload; seq and time are absent when the device sent none. */
export interface DecodedReading {
  seq: number | undefined;
  time: number | undefined;
  type: string | undefined;
  /** The reading; undefined when `payloadText` carries it. */
  payload: unknown;
  /**
   * The reading's JSON text when it is known without serialising it again:
   * a plain object reading that starts `{"seq":<n>,"time":<n>` or `{"seq":<n>`
   * (as JSON.stringify of `{seq, time, ...reading}` writes it) is the device's
   * own text less those.
   */
  payloadText?: string;
}

export class PayloadError extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Decodes a payload. Throws PayloadError with the reason for anything that is
 * not UTF-8 JSON of a number or an object, or whose envelope names another device.
 */
export function decodePayload(raw: Buffer, deviceId: string): DecodedReading {
  const text = raw.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new PayloadError('malformed: not JSON');
  }
  if (typeof value === 'number') return { seq: undefined, time: undefined, type: undefined, payload: value };
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new PayloadError('malformed: payload must be a JSON object or number');
  const obj = value as Record<string, unknown>;
  if (obj.seq !== undefined && !isPositiveInt(obj.seq))
    throw new PayloadError('malformed: seq must be an integer >= 1');
  if (obj.time !== undefined && !isTime(obj.time))
    throw new PayloadError('malformed: time must be an integer of ms since the epoch');
  if ('payload' in obj) {
    // The project's own envelope: {deviceId?, seq?, time?, type?, payload}.
    if (obj.deviceId !== undefined && obj.deviceId !== deviceId)
      throw new PayloadError(
        `envelope names device ${JSON.stringify(obj.deviceId)}, topic names ${deviceId}`,
      );
    return {
      seq: obj.seq as number | undefined,
      time: obj.time as number | undefined,
      type: typeof obj.type === 'string' ? obj.type : undefined,
      payload: obj.payload,
    };
  }
  // A plain object reading: seq and time, when present, are lifted out of it.
  const payloadText = restText(text, obj);
  if (payloadText !== undefined)
    return {
      seq: obj.seq as number,
      time: obj.time as number | undefined,
      type: undefined,
      payload: undefined,
      payloadText,
    };
  const { seq, time, ...rest } = obj;
  return { seq: seq as number | undefined, time: time as number | undefined, type: undefined, payload: rest };
}

/**
 * The text of a parsed reading without its leading seq (and time, when it
 * follows seq), when the text starts that way (JSON.stringify's form of
 * `{seq, time?, ...reading}`) and names neither again (a repeated key would win
 * in the parsed value, not in the text). Undefined otherwise: the caller
 * serialises the rest itself.
 */
function restText(text: string, obj: Record<string, unknown>): string | undefined {
  if (!text.startsWith('{"seq":')) return undefined;
  let end = integerEnd(text, 7, obj.seq);
  if (end < 0) return undefined;
  // Devices that leave the time to the gateway send seq alone.
  if (text.startsWith(',"time":', end)) end = integerEnd(text, end + 8, obj.time);
  if (end < 0) return undefined;
  const next = text.charCodeAt(end);
  if (next === 0x7d /* } */) return end === text.length - 1 ? '{}' : undefined;
  if (next !== 0x2c /* , */) return undefined;
  if (text.includes('"seq"', end) || text.includes('"time"', end)) return undefined;
  return `{${text.slice(end + 1)}`;
}

/** Where the digits of `value` written at `from` end, or -1 when the text there is not that integer. */
function integerEnd(text: string, from: number, value: unknown): number {
  if (typeof value !== 'number') return -1;
  let n = 0;
  let i = from;
  for (; i < text.length && i - from < 16; i++) {
    const c = text.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) break;
    n = n * 10 + c;
  }
  // At least one digit, no leading zero, and the value JSON.parse read (16 digits stay exact).
  if (i === from || (text.charCodeAt(from) === 0x30 && i - from > 1) || n !== value) return -1;
  return i;
}

/** True when a device id taken from a topic may be used as one (it decides keys and partitions). */
export function validDeviceId(deviceId: string): boolean {
  return DEVICE_ID_PATTERN.test(deviceId);
}
