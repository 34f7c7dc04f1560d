import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { renderConfigDocs } from '../../scripts/config-docs.js';

it('docs/config.md matches the config schemas (run npm run docs:config after changing an option)', () => {
  const onDisk = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');
  expect(onDisk).toBe(renderConfigDocs());
});
