/**
 * Loads a config from defaults < file (JSON or YAML) < environment < flags, and
 * validates every value once, at start. Errors name the option, where the bad
 * value came from and what is expected.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';
import { type ConfigOf, envName, flagName, type OptionSpec, type Schema } from './schema.js';
import { parseDuration, parseSize } from './units.js';

export interface ConfigSources {
  /** Path of a JSON or YAML config file. */
  file?: string;
  /** Environment (defaults to none: pass process.env explicitly). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Values from command-line flags, keyed by option name. */
  flags?: Readonly<Record<string, string | boolean>>;
  /** Values set by code (tests, embedding), keyed by option name; applied last. */
  overrides?: Readonly<Record<string, unknown>>;
}

function flatten(obj: unknown, prefix: string, out: Map<string, unknown>): void {
  if (typeof obj === 'object' && obj !== null && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      // A nested object whose dotted key is itself an option (none today) would be ambiguous; options are leaves.
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) flatten(v, key, out);
      else out.set(key, v);
    }
  }
}

function readFileValues(file: string): Map<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      'config',
      file,
      `cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(
      'config',
      file,
      `is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
    );
  }
  const values = new Map<string, unknown>();
  if (parsed === null || parsed === undefined) return values;
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('config', file, 'must hold an object of options');
  }
  flatten(parsed, '', values);
  return values;
}

/** Converts one raw value (string from env/flags, or a typed value from a file) to the option's type. */
export function coerce(key: string, spec: OptionSpec, raw: unknown, source: string): unknown {
  const fail = (expected: string): never => {
    throw new ConfigError(key, source, `must be ${expected}, got ${JSON.stringify(raw)}`);
  };
  switch (spec.type) {
    case 'string':
    case 'optionalString':
      if (typeof raw === 'string' || typeof raw === 'number') return String(raw);
      return fail('a string');
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1' || raw === 'yes') return true;
      if (raw === 'false' || raw === '0' || raw === 'no') return false;
      return fail('true or false');
    case 'enum':
      // A YAML `true`/`false` (or a number) names the value spelled the same way.
      if (
        (typeof raw === 'string' || typeof raw === 'boolean' || typeof raw === 'number') &&
        spec.values.includes(String(raw))
      )
        return String(raw);
      return fail(`one of ${spec.values.join(', ')}`);
    case 'list':
      if (Array.isArray(raw) && raw.every((v) => typeof v === 'string' || typeof v === 'number'))
        return raw.map(String);
      if (typeof raw === 'string') return raw === '' ? [] : raw.split(',').map((s) => s.trim());
      return fail('a comma-separated list');
    default: {
      let n: number | undefined;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string') {
        if (spec.type === 'duration') n = parseDuration(raw);
        else if (spec.type === 'size') n = parseSize(raw);
        else if (raw.trim() !== '') n = Number(raw);
      }
      const expected =
        spec.type === 'duration'
          ? 'a duration such as 500ms, 30s or 5m'
          : spec.type === 'size'
            ? 'a size such as 512, 64KiB or 10MB'
            : spec.type === 'integer'
              ? 'an integer'
              : 'a number';
      if (n === undefined || !Number.isFinite(n)) return fail(expected);
      if (spec.type === 'integer' && !Number.isInteger(n)) return fail(expected);
      if (spec.min !== undefined && n < spec.min)
        throw new ConfigError(key, source, `must be >= ${spec.min}, got ${n}`);
      if (spec.max !== undefined && n > spec.max)
        throw new ConfigError(key, source, `must be <= ${spec.max}, got ${n}`);
      return n;
    }
  }
}

export function loadConfig<S extends Schema>(
  schema: S,
  envPrefix: string,
  sources: ConfigSources = {},
): ConfigOf<S> {
  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(schema)) config[key] = spec.default;

  if (sources.file) {
    for (const [key, raw] of readFileValues(sources.file)) {
      const spec = schema[key];
      if (!spec) throw new ConfigError(key, sources.file, `is not a known option (see --help for the list)`);
      config[key] = coerce(key, spec, raw, sources.file);
    }
  }
  const env = sources.env ?? {};
  for (const [key, spec] of Object.entries(schema)) {
    const name = spec.env ?? envName(envPrefix, key);
    const raw = env[name];
    if (raw !== undefined && raw !== '') config[key] = coerce(key, spec, raw, `environment ${name}`);
  }
  for (const [key, raw] of Object.entries(sources.flags ?? {})) {
    const spec = schema[key];
    if (!spec) throw new ConfigError(key, 'flags', 'is not a known option (see --help)');
    config[key] = coerce(key, spec, raw, `flag --${flagName(key)}`);
  }
  for (const [key, raw] of Object.entries(sources.overrides ?? {})) {
    const spec = schema[key];
    if (!spec) throw new ConfigError(key, 'code', 'is not a known option');
    config[key] = raw === undefined ? spec.default : coerce(key, spec, raw, 'code');
  }
  return config as ConfigOf<S>;
}

/** The config with secrets masked, for a start-up log line. */
export function redactConfig<S extends Schema>(schema: S, config: ConfigOf<S>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(schema)) {
    const value = (config as Record<string, unknown>)[key];
    out[key] = spec.secret && value !== undefined ? '***' : value;
  }
  return out;
}
