/**
 * The example config shipped with the binaries names every agent option with
 * its real default, and every commented line is valid once uncommented.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { loadConfig } from '#shared/config/load.js';
import { agentSchema, ENV_PREFIX } from '../../device/config.js';
import { exampleConfig } from '../../scripts/binaries/example-config.js';

const dir = mkdtempSync(join(tmpdir(), 'example-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const text = exampleConfig(agentSchema, ENV_PREFIX, 'test');
const load = (yaml: string) => {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return loadConfig(agentSchema, ENV_PREFIX, { file }) as Record<string, unknown>;
};

it('as shipped (all commented) it loads to the defaults', () => {
  const defaults = Object.fromEntries(Object.entries(agentSchema).map(([k, s]) => [k, s.default]));
  expect(load(text)).toEqual(defaults);
});

it('names every option once, and each uncommented line loads to that option default', () => {
  // Each option's line follows its "# env NAME, flag --name" line.
  const lines = text.split('\n');
  const optionLines = lines.filter((_, i) => i > 0 && lines[i - 1]!.startsWith('# env '));
  expect(optionLines.map((l) => l.slice(2, l.indexOf(':', 2)))).toEqual(Object.keys(agentSchema));
  const config = load(optionLines.map((l) => l.slice(2)).join('\n'));
  for (const [key, spec] of Object.entries(agentSchema)) {
    expect(config[key], key).toEqual(spec.default === undefined ? '' : spec.default);
  }
});
