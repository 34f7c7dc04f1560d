/** What every `ctl` subcommand gets: config, a Redis client, the key module and output helpers. */
import type { ConfigOf } from '#shared/config/schema.js';
import type { Keys } from '#shared/keys.js';
import type { RedisClient } from '#shared/redis/connect.js';
import type { ctlSchema } from './config.js';

export interface CtlContext {
  config: ConfigOf<typeof ctlSchema>;
  client: RedisClient;
  keys: Keys;
  /** --json: print machine-readable JSON instead of tables. */
  json: boolean;
  out(text: string): void;
}

/** A subcommand: returns the process exit code. */
export type CtlCommand = (ctx: CtlContext, args: string[]) => Promise<number>;

/** Renders rows as an aligned plain-text table for people. */
export function table(rows: ReadonlyArray<Record<string, unknown>>, columns?: string[]): string {
  if (rows.length === 0) return '(none)';
  const cols = columns ?? Object.keys(rows[0]!);
  const cells = rows.map((r) => cols.map((c) => formatCell(r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(cols), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

function formatCell(v: unknown): string {
  if (v === undefined || v === null) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
