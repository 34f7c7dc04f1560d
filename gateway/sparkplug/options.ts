/** Sparkplug B options (part of the gateway's schema, gateway/config.ts; docs/sparkplug.md). */

import { opt } from '#shared/config/schema.js';
import { ConfigError } from '#shared/errors.js';

export const sparkplugSchema = {
  'sparkplug.enabled': opt.enum(
    ['auto', 'true', 'false'],
    'auto',
    'Take Sparkplug B (spBv1.0/...) messages: auto = in broker mode only; true = in bridge mode too (the gateway subscribes to the groups without a shared subscription, so run one Sparkplug gateway per group); false = never',
  ),
  'sparkplug.groups': opt.list(
    [],
    'Sparkplug group ids taken, comma-separated (empty = every group); messages of other groups are refused as unmapped',
  ),
  'sparkplug.maxNodes': opt.integer(
    100_000,
    'Edge nodes whose session (bdSeq, seq, alias table, online devices) is kept; past it the least recently born is forgotten and asked to rebirth when next heard',
    { min: 1, max: 10_000_000 },
  ),
  'sparkplug.rebirthInterval': opt.duration(
    5000,
    'Least time between two rebirth requests (NCMD Node Control/Rebirth) to one edge node, so a node that keeps skipping is not flooded',
    { min: 0 },
  ),
} as const;

/** Resolved options the Sparkplug handler runs with. */
export interface SparkplugOptions {
  /** Whether the gateway takes Sparkplug messages in its mode. */
  readonly enabled: boolean;
  /** Group ids taken; empty: every group. */
  readonly groups: readonly string[];
  readonly maxNodes: number;
  readonly rebirthIntervalMs: number;
  readonly maxPayloadBytes: number;
}

type SparkplugConfig = {
  readonly [K in keyof typeof sparkplugSchema]: (typeof sparkplugSchema)[K]['default'];
} & { readonly 'gateway.mode': string; readonly 'gateway.maxPayloadBytes': number };

export function sparkplugOptions(config: SparkplugConfig): SparkplugOptions {
  const mode = config['sparkplug.enabled'];
  for (const g of config['sparkplug.groups'])
    if (g === '' || /[+#/]/.test(g))
      throw new ConfigError(
        'sparkplug.groups',
        `"${g}"`,
        'is not a Sparkplug group id (one topic level, no + or #)',
      );
  return {
    enabled: mode === 'true' || (mode === 'auto' && config['gateway.mode'] === 'broker'),
    groups: config['sparkplug.groups'],
    maxNodes: config['sparkplug.maxNodes'],
    rebirthIntervalMs: config['sparkplug.rebirthInterval'],
    maxPayloadBytes: config['gateway.maxPayloadBytes'],
  };
}
