/**
 * Loads mapping files (YAML, or JSON, which YAML reads too) and validates
 * every field once, at start: a bad file stops the gateway with a
 * MappingError naming the file and the field. docs/mappings.md describes the
 * format; builtin/*.yaml are mappings shipped with the gateway.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { TYPE_PATTERN } from '#shared/envelope.js';
import { MappingError } from './errors.js';
import { FORMS, type FormName } from './forms.js';
import { TopicPattern } from './pattern.js';
import { Pick } from './picks.js';
import type { Condition, Mapping, ReadingSpec, Rule, TimeSpec } from './rule.js';
import { Template } from './template.js';

export const BUILTIN_DIR = fileURLToPath(new URL('./builtin/', import.meta.url));

/** Names of the mappings shipped in builtin/. */
export function builtinMappings(): string[] {
  return readdirSync(BUILTIN_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

/** A built-in name (`tasmota`) or a path to a mapping file. */
export function loadMapping(nameOrPath: string): Mapping {
  const builtin = `${BUILTIN_DIR}${nameOrPath}.yaml`;
  const isPath = /[/\\]/.test(nameOrPath) || ['.yaml', '.yml', '.json'].includes(extname(nameOrPath));
  const file = !isPath && existsSync(builtin) ? builtin : nameOrPath;
  if (!isPath && file === nameOrPath)
    throw new MappingError(
      nameOrPath,
      '',
      `is neither a built-in mapping (${builtinMappings().join(', ')}) nor a file path (a path has a / or ends in .yaml)`,
    );
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new MappingError(nameOrPath, '', `cannot be read: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new MappingError(nameOrPath, '', `is not valid YAML: ${(err as Error).message}`);
  }
  return compileMapping(doc, nameOrPath, basename(file, extname(file)));
}

type Obj = Record<string, unknown>;

const MAPPING_KEYS = ['name', 'description', 'rules'];
const RULE_KEYS = ['name', 'topic', 'payload', 'device', 'time', 'when', 'ignore', 'readings'];
const READING_KEYS = ['type', 'value', 'fields', 'required'];

/** Validates a parsed mapping document; `source` names it in errors. */
export function compileMapping(doc: unknown, source: string, fallbackName: string): Mapping {
  const root = object(doc, source, '');
  known(root, MAPPING_KEYS, source, '');
  const name = root.name === undefined ? fallbackName : string(root.name, source, 'name');
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name))
    throw new MappingError(source, 'name', `"${name}" must be 1-64 letters, digits, _ . -`);
  if (root.description !== undefined) string(root.description, source, 'description');
  if (!Array.isArray(root.rules) || root.rules.length === 0)
    throw new MappingError(source, 'rules', 'must be a non-empty list of rules');
  const names = new Set<string>();
  const rules = root.rules.map((r, i) => {
    const rule = compileRule(r, source, `rules[${i}]`);
    if (names.has(rule.name))
      throw new MappingError(source, `rules[${i}].name`, `"${rule.name}" is used by an earlier rule`);
    names.add(rule.name);
    return rule;
  });
  return { name, source, rules };
}

function compileRule(raw: unknown, source: string, at: string): Rule {
  const r = object(raw, source, at);
  known(r, RULE_KEYS, source, at);
  if (r.topic === undefined) throw new MappingError(source, `${at}.topic`, 'is required');
  const pattern = new TopicPattern(string(r.topic, source, `${at}.topic`), source, `${at}.topic`);
  const name =
    r.name === undefined ? `rule${at.slice('rules'.length)}` : string(r.name, source, `${at}.name`);
  const form = (r.payload === undefined ? 'json' : string(r.payload, source, `${at}.payload`)) as FormName;
  if (!FORMS.includes(form))
    throw new MappingError(source, `${at}.payload`, `"${form}" must be one of ${FORMS.join(', ')}`);
  const ignore = r.ignore === undefined ? false : bool(r.ignore, source, `${at}.ignore`);
  const when = compileWhen(r.when, source, `${at}.when`);
  if (ignore) {
    for (const k of ['device', 'readings', 'time'])
      if (r[k] !== undefined)
        throw new MappingError(source, `${at}.${k}`, 'has no use in an ignore rule (it writes nothing)');
    return { name, pattern, when, ignore, form, device: undefined, time: undefined, readings: [] };
  }
  if (r.device === undefined)
    throw new MappingError(
      source,
      `${at}.device`,
      'is required: the device id template, e.g. tasmota-{device}',
    );
  const device = new Template(
    string(r.device, source, `${at}.device`),
    pattern.names,
    source,
    `${at}.device`,
  );
  if (!Array.isArray(r.readings) || r.readings.length === 0)
    throw new MappingError(source, `${at}.readings`, 'must be a non-empty list of readings');
  const readings = r.readings.map((x, i) => compileReading(x, pattern.names, source, `${at}.readings[${i}]`));
  return {
    name,
    pattern,
    when,
    ignore,
    form,
    device,
    time: compileTime(r.time, source, `${at}.time`),
    readings,
  };
}

function compileReading(raw: unknown, names: readonly string[], source: string, at: string): ReadingSpec {
  const r = object(raw, source, at);
  known(r, READING_KEYS, source, at);
  if (r.type === undefined) throw new MappingError(source, `${at}.type`, 'is required');
  const typeText = string(r.type, source, `${at}.type`);
  // A type without parts is checked now; one with parts when the message comes (the envelope checks it).
  if (!typeText.includes('{') && !TYPE_PATTERN.test(typeText))
    throw new MappingError(source, `${at}.type`, `"${typeText}" must match ${TYPE_PATTERN}`);
  const type = new Template(typeText, names, source, `${at}.type`);
  if ((r.value === undefined) === (r.fields === undefined))
    throw new MappingError(source, at, 'needs exactly one of value (one pick) or fields (name: pick)');
  const value =
    r.value === undefined
      ? undefined
      : new Pick(string(r.value, source, `${at}.value`), source, `${at}.value`);
  let fields: Array<[string, Pick]> | undefined;
  if (r.fields !== undefined) {
    const f = object(r.fields, source, `${at}.fields`);
    fields = Object.entries(f).map(([k, v]) => [
      k,
      new Pick(string(v, source, `${at}.fields.${k}`), source, `${at}.fields.${k}`),
    ]);
    if (fields.length === 0) throw new MappingError(source, `${at}.fields`, 'must name at least one field');
  }
  const required = r.required === undefined ? false : bool(r.required, source, `${at}.required`);
  return { type, value, fields, required };
}

function compileWhen(raw: unknown, source: string, at: string): Condition[] {
  if (raw === undefined) return [];
  const w = object(raw, source, at);
  return Object.entries(w).map(([path, want]) => {
    const oneOf = Array.isArray(want) ? want : [want];
    if (oneOf.length === 0 || !oneOf.every((v) => ['string', 'number', 'boolean'].includes(typeof v)))
      throw new MappingError(source, `${at}.${path}`, 'must be a value or a list of values');
    return { pick: new Pick(path, source, `${at}.${path}`), oneOf: oneOf.map(String) };
  });
}

function compileTime(raw: unknown, source: string, at: string): TimeSpec | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw === 'string') return { pick: new Pick(raw, source, at), unit: 'ms' };
  const t = object(raw, source, at);
  known(t, ['pick', 'unit'], source, at);
  const unit = t.unit === undefined ? 'ms' : string(t.unit, source, `${at}.unit`);
  if (unit !== 'ms' && unit !== 's')
    throw new MappingError(source, `${at}.unit`, `"${unit}" must be ms or s`);
  if (t.pick === undefined) throw new MappingError(source, `${at}.pick`, 'is required');
  return { pick: new Pick(string(t.pick, source, `${at}.pick`), source, `${at}.pick`), unit };
}

function object(v: unknown, source: string, at: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new MappingError(source, at, 'must be a mapping of keys to values');
  return v as Obj;
}

function string(v: unknown, source: string, at: string): string {
  if (typeof v !== 'string' || v === '') throw new MappingError(source, at, 'must be a non-empty string');
  return v;
}

function bool(v: unknown, source: string, at: string): boolean {
  if (typeof v !== 'boolean') throw new MappingError(source, at, 'must be true or false');
  return v;
}

function known(o: Obj, keys: readonly string[], source: string, at: string): void {
  for (const k of Object.keys(o))
    if (!keys.includes(k))
      throw new MappingError(
        source,
        at ? `${at}.${k}` : k,
        `is not a known field (known: ${keys.join(', ')})`,
      );
}
