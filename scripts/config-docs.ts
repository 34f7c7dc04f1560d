/**
 * Writes docs/config.md from the config schemas, so every default is written
 * once (in its schema) and the docs cannot drift: a unit test compares.
 * Run: npm run docs:config
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { markdownTable } from '#shared/config/cli.js';
import type { Schema } from '#shared/config/schema.js';
import { ENV_PREFIX as CTL_ENV, ctlSchema } from '../ctl/config.js';
import { ENV_PREFIX as AGENT_ENV, agentSchema } from '../device/config.js';
import { ENV_PREFIX as SIM_ENV, simSchema } from '../firmware-sim/config.js';
import { ENV_PREFIX as GATEWAY_ENV, gatewaySchema } from '../gateway/config.js';

export const PROGRAMS: Array<{ name: string; command: string; schema: Schema; envPrefix: string }> = [
  { name: 'Device agent', command: 'agent', schema: agentSchema, envPrefix: AGENT_ENV },
  { name: 'Gateway', command: 'gateway', schema: gatewaySchema, envPrefix: GATEWAY_ENV },
  { name: 'Operator CLI', command: 'ctl', schema: ctlSchema, envPrefix: CTL_ENV },
  { name: 'Fleet simulator', command: 'sim', schema: simSchema, envPrefix: SIM_ENV },
];

export function renderConfigDocs(): string {
  const parts = [
    '# Configuration',
    '',
    'Generated from the config schemas by `npm run docs:config`; do not edit by hand.',
    '',
    'Every program reads options from, in rising precedence: the defaults below, a JSON or',
    'YAML file given with `--config FILE` (nested keys: `producer: { lingerMs: 10 }`), the',
    'environment, and command-line flags. Values are validated at start; a bad one stops',
    'the program with a message naming the option, where the value came from and what is',
    'expected. Durations take `ms`, `s`, `m`, `h`, `d` (a bare number is milliseconds);',
    'sizes take `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB` (a bare number is bytes).',
    '',
  ];
  for (const p of PROGRAMS) {
    parts.push(`## ${p.name} (\`${p.command}\`)`, '', markdownTable(p.schema, p.envPrefix), '');
  }
  return parts.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(new URL('../docs/config.md', import.meta.url), renderConfigDocs());
  process.stdout.write('wrote docs/config.md\n');
}
