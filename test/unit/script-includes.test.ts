/**
 * Lua fragments are written once (shared/redis/scripts/lib/) and included at
 * load time: the text a server gets has every `-- #include` line replaced, and
 * no script carries its own copy of a fragment (the publish-once steps, the
 * terminal-status check) to drift from the others.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SCRIPT_FILES, scriptSource } from '#shared/redis/scripts.js';

const dir = join(import.meta.dirname, '..', '..', 'shared', 'redis', 'scripts');
const raw = (file: string) => readFileSync(join(dir, file), 'utf8');

describe('Lua includes', () => {
  it('every shipped script is listed, and expands to a text with no include line left', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.lua'));
    expect([...files].sort()).toEqual([...SCRIPT_FILES].sort());
    for (const file of SCRIPT_FILES) expect(scriptSource(file)).not.toMatch(/^-- #include /m);
  });

  it('a script that includes a fragment gets its text once, in place of the include line', () => {
    const fragment = raw('lib/publishOnce.lua').trimEnd();
    for (const file of ['publishOnce-2.lua', 'concludeCommand-6.lua']) {
      expect(raw(file)).toMatch(/^-- #include publishOnce$/m);
      expect(scriptSource(file).split(fragment)).toHaveLength(2);
    }
    expect(scriptSource('finishCommand-1.lua')).toContain(raw('lib/isTerminal.lua').trimEnd());
  });

  it('no script keeps a copy of a fragment', () => {
    for (const file of SCRIPT_FILES) {
      const text = raw(file);
      expect(text, file).not.toMatch(/local function (publishOnce|isTerminal|argvFrom)\b/);
      expect(text, file).not.toMatch(/st == 'succeeded' or st == 'failed'/);
    }
  });
});
