/**
 * A compiled mapping: its rules, and how one MQTT message becomes readings.
 *
 * Rules are tried in file order; the first whose topic pattern matches and
 * whose `when` conditions hold takes the message. Its outcome is one of:
 * readings (each becomes a telemetry entry), ignored (an `ignore: true` rule:
 * acknowledged, counted, not written), or rejected with the reason; a topic
 * no rule's pattern matches is `none`, so the next mapping may take it.
 */
import type { FormName } from './forms.js';
import { FormError, parseForm } from './forms.js';
import type { TopicPattern } from './pattern.js';
import type { Pick } from './picks.js';
import type { Template } from './template.js';

export interface ReadingSpec {
  type: Template;
  /** One value: a finite number becomes the payload; anything else `{value: ...}`. */
  value: Pick | undefined;
  /** An object of named picks; fields the payload lacks are left out. */
  fields: ReadonlyArray<readonly [string, Pick]> | undefined;
  /** When true, a message without this reading is rejected; else the reading is skipped. */
  required: boolean;
}

export interface Condition {
  pick: Pick;
  /** The picked value, as text, must be one of these. */
  oneOf: readonly string[];
}

export interface TimeSpec {
  pick: Pick;
  /** Unit of a numeric time: ms or s since the epoch (Shelly sends seconds). Strings are ISO 8601. */
  unit: 'ms' | 's';
}

export interface Rule {
  name: string;
  pattern: TopicPattern;
  when: readonly Condition[];
  ignore: boolean;
  form: FormName;
  device: Template | undefined;
  time: TimeSpec | undefined;
  readings: readonly ReadingSpec[];
}

export interface Mapping {
  name: string;
  /** Where it came from: a built-in name or a file path. */
  source: string;
  rules: readonly Rule[];
}

export interface MappedReading {
  type: string;
  payload: number | Record<string, unknown>;
}

export type MappingOutcome =
  | { kind: 'none' }
  | { kind: 'ignored'; mapping: string; rule: string }
  | { kind: 'rejected'; mapping: string; rule: string; reason: 'unmapped' | 'malformed'; detail: string }
  | {
      kind: 'readings';
      mapping: string;
      rule: string;
      deviceId: string;
      /** Device time (ms) when the payload carries one, else undefined (gateway time). */
      time: number | undefined;
      readings: MappedReading[];
    };

const text = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

export function resolve(mapping: Mapping, topic: string, payload: Buffer): MappingOutcome {
  const misses: string[] = [];
  let topicMatched = false;
  for (const rule of mapping.rules) {
    const parts = rule.pattern.match(topic);
    if (!parts) continue;
    topicMatched = true;
    const reject = (reason: 'unmapped' | 'malformed', detail: string): MappingOutcome => ({
      kind: 'rejected',
      mapping: mapping.name,
      rule: rule.name,
      reason,
      detail: `mapping ${mapping.name}, rule ${rule.name}: ${detail}`,
    });
    // An ignore rule without conditions never looks at the payload (a Tasmota LWT is plain text).
    if (rule.ignore && rule.when.length === 0)
      return { kind: 'ignored', mapping: mapping.name, rule: rule.name };
    let value: unknown;
    try {
      value = parseForm(rule.form, payload);
    } catch (err) {
      if (err instanceof FormError) {
        // An ignore rule with conditions may not be meant for this payload: let a later rule try.
        if (rule.ignore && rule.when.length > 0) continue;
        return reject('malformed', err.reason);
      }
      throw err;
    }
    const failed = rule.when.find((c) => !c.oneOf.includes(text(c.pick.from(value))));
    if (failed) {
      misses.push(
        `${rule.name} wants ${failed.pick.path} in [${failed.oneOf.join(', ')}], got ${text(failed.pick.from(value)) ?? 'nothing'}`,
      );
      continue;
    }
    if (rule.ignore) return { kind: 'ignored', mapping: mapping.name, rule: rule.name };
    const readings: MappedReading[] = [];
    const missing: string[] = [];
    for (const spec of rule.readings) {
      const type = spec.type.render(parts);
      const reading = pickReading(spec, value, type);
      if (reading) readings.push(reading);
      else if (spec.required) return reject('malformed', `required reading ${type} is not in the payload`);
      else missing.push(type);
    }
    if (readings.length === 0)
      return reject('malformed', `payload holds none of the readings (${missing.join(', ')})`);
    let time: number | undefined;
    if (rule.time) {
      const raw = rule.time.pick.from(value);
      if (raw !== undefined) {
        time = toTime(raw, rule.time.unit);
        if (time === undefined)
          return reject('malformed', `time ${rule.time.pick.path} = ${text(raw)} is not a time`);
      }
    }
    return {
      kind: 'readings',
      mapping: mapping.name,
      rule: rule.name,
      deviceId: rule.device!.render(parts),
      time,
      readings,
    };
  }
  if (!topicMatched) return { kind: 'none' };
  return {
    kind: 'rejected',
    mapping: mapping.name,
    rule: '',
    reason: 'unmapped',
    detail: `mapping ${mapping.name}: no rule takes this message (${misses.join('; ')})`,
  };
}

function pickReading(spec: ReadingSpec, value: unknown, type: string): MappedReading | undefined {
  if (spec.value) {
    const v = spec.value.from(value);
    if (v === undefined) return undefined;
    return { type, payload: typeof v === 'number' && Number.isFinite(v) ? v : { value: v } };
  }
  const out: Record<string, unknown> = {};
  let found = false;
  for (const [name, pick] of spec.fields ?? []) {
    const v = pick.from(value);
    if (v === undefined) continue;
    out[name] = v;
    found = true;
  }
  return found ? { type, payload: out } : undefined;
}

/** ms since the epoch, or undefined for a value that is no time. */
function toTime(raw: unknown, unit: 'ms' | 's'): number | undefined {
  if (typeof raw === 'number' && Number.isFinite(raw) && raw >= 0)
    return Math.round(unit === 's' ? raw * 1000 : raw);
  if (typeof raw === 'string') {
    const t = Date.parse(raw);
    return Number.isNaN(t) || t < 0 ? undefined : t;
  }
  return undefined;
}
