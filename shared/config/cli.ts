/**
 * Command-line parsing shared by every program: --help, --version, --config
 * FILE, and one --flag per schema option (generated from the schema, so help
 * and parsing never drift apart).
 */
import { parseArgs } from 'node:util';
import { ConfigError } from '../errors.js';
import { envName, flagName, type Schema } from './schema.js';

export interface ParsedCli {
  help: boolean;
  version: boolean;
  configFile: string | undefined;
  flags: Record<string, string | boolean>;
  positionals: string[];
}

export function parseCli(
  schema: Schema,
  argv: readonly string[],
  extraBooleans: readonly string[] = [],
): ParsedCli {
  const byFlag = new Map<string, string>();
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
    config: { type: 'string', short: 'c' },
  };
  for (const b of extraBooleans) options[b] = { type: 'boolean' };
  for (const [key, spec] of Object.entries(schema)) {
    const flag = flagName(key);
    byFlag.set(flag, key);
    options[flag] = { type: spec.type === 'boolean' ? 'boolean' : 'string' };
  }
  const booleans = new Set(
    Object.entries(options)
      .filter(([, o]) => o.type === 'boolean')
      .map(([flag]) => flag),
  );
  const { args, negated } = spellBooleans(argv, booleans);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ConfigError(
      'flags',
      'command line',
      `${(err as Error).message} (run with --help for the options)`,
    );
  }
  const flags: Record<string, string | boolean> = {};
  for (const flag of negated) parsed.values[flag] = false;
  for (const [flag, value] of Object.entries(parsed.values)) {
    const key = byFlag.get(flag);
    if (key !== undefined && value !== undefined) flags[key] = value as string | boolean;
    else if (extraBooleans.includes(flag)) flags[flag] = value as boolean;
  }
  return {
    help: parsed.values.help === true,
    version: parsed.values.version === true,
    configFile: typeof parsed.values.config === 'string' ? parsed.values.config : undefined,
    flags,
    positionals: parsed.positionals,
  };
}

const TRUE_WORDS = new Set(['true', 'yes', '1']);
const FALSE_WORDS = new Set(['false', 'no', '0']);

/**
 * Lets a boolean flag be spelled as users do: `--x`, `--x=false`,
 * `--x false`, `--no-x`. parseArgs (Node 20) knows only `--x`, and would take
 * `--x false` as true plus a stray positional "false": the opposite of what
 * was asked, silently.
 */
function spellBooleans(
  argv: readonly string[],
  booleans: ReadonlySet<string>,
): { args: string[]; negated: Set<string> } {
  const args: string[] = [];
  const negated = new Set<string>();
  const setTo = (flag: string, on: boolean) => {
    if (on) {
      negated.delete(flag);
      args.push(`--${flag}`);
    } else negated.add(flag);
  };
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--') {
      args.push(...argv.slice(i));
      break;
    }
    const m = /^--([^=]+)(?:=(.*))?$/.exec(token);
    const name = m?.[1];
    if (!m || name === undefined) {
      args.push(token);
      continue;
    }
    const value = m[2];
    if (booleans.has(name)) {
      if (value === undefined) {
        const next = argv[i + 1]?.toLowerCase();
        if (next !== undefined && (TRUE_WORDS.has(next) || FALSE_WORDS.has(next))) {
          setTo(name, TRUE_WORDS.has(next));
          i++;
        } else setTo(name, true);
        continue;
      }
      const word = value.toLowerCase();
      if (!TRUE_WORDS.has(word) && !FALSE_WORDS.has(word))
        throw new ConfigError('flags', 'command line', `--${name} takes true or false, got "${value}"`);
      setTo(name, TRUE_WORDS.has(word));
      continue;
    }
    if (value === undefined && name.startsWith('no-') && booleans.has(name.slice(3))) {
      setTo(name.slice(3), false);
      continue;
    }
    args.push(token);
  }
  return { args, negated };
}

function describeDefault(value: unknown): string {
  if (value === undefined || value === '') return '(none)';
  if (Array.isArray(value)) return value.length ? value.join(',') : '(empty)';
  return String(value);
}

/** Help text listing every option with its flag, environment variable and default. */
export function helpText(usage: string, schema: Schema, envPrefix: string): string {
  const lines = [usage, '', 'Options (flag, environment variable, default):', ''];
  lines.push('  -h, --help                 show this help', '  -v, --version              print the version');
  lines.push('  -c, --config FILE          read options from a JSON or YAML file', '');
  for (const [key, spec] of Object.entries(schema)) {
    const values = spec.type === 'enum' ? ` (${spec.values.join('|')})` : '';
    lines.push(
      `  --${flagName(key)}  [${spec.env ?? envName(envPrefix, key)}]  default: ${describeDefault(spec.default)}`,
    );
    lines.push(`      ${spec.doc}${values}`);
  }
  return lines.join('\n');
}

/** Markdown table of a schema, for docs/config.md. */
export function markdownTable(schema: Schema, envPrefix: string): string {
  const rows = ['| option | flag | environment | default | meaning |', '| --- | --- | --- | --- | --- |'];
  for (const [key, spec] of Object.entries(schema)) {
    const values = spec.type === 'enum' ? ` One of: ${spec.values.join(', ')}.` : '';
    rows.push(
      `| \`${key}\` | \`--${flagName(key)}\` | \`${spec.env ?? envName(envPrefix, key)}\` | \`${describeDefault(spec.default)}\` | ${spec.doc}${values} |`,
    );
  }
  return rows.join('\n');
}
