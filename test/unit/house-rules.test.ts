/**
 * The layout rules a newcomer relies on (README, "Where things are"): a component
 * uses #shared/* and another component's public index.ts only, and code cites
 * the project's own docs (docs/guarantees.md), never a file outside the repo.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const components = ['device', 'gateway', 'ctl', 'firmware-sim', 'shared'];

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|lua)$/.test(e.name))
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

const importPath = /from '((?:\.\.\/)+)([\w-]+)\/([^']+)'/g;

/** Relative imports of a file (type-only ones too: a loop of types is still a loop to read). */
function localImports(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  return [...text.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)].map((m) =>
    relative(root, join(root, dirname(file), `${m[1]}.ts`)),
  );
}

/** Every import cycle among the files of `component`, each as the files in order. */
function importCycles(component: string): string[][] {
  const files = new Set(sources(component).filter((f) => f.endsWith('.ts')));
  const graph = new Map([...files].map((f) => [f, localImports(f).filter((t) => files.has(t))]));
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    path.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === 'open') cycles.push([...path.slice(path.indexOf(t)), t]);
      else if (!state.has(t)) visit(t);
    }
    path.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  return cycles;
}

describe('house rules', () => {
  it('a component imports another component only through its index.ts', () => {
    const offences: string[] = [];
    for (const component of components) {
      for (const file of sources(component)) {
        const depth = file.split('/').length - 1;
        for (const m of readFileSync(join(root, file), 'utf8').matchAll(importPath)) {
          const ups = (m[1]?.length ?? 0) / 3;
          const target = m[2] ?? '';
          // Only imports that climb out to the repo root and name another component.
          if (ups !== depth || target === component || !components.includes(target)) continue;
          if (target === 'shared' || m[3] !== 'index.js') offences.push(`${file}: ${m[0]}`);
        }
      }
    }
    expect(offences).toEqual([]);
  });

  it.each(components)('%s has no import loops (contracts live in their own modules)', (component) => {
    expect(importCycles(component).map((c) => c.join(' -> '))).toEqual([]);
  });

  it('code cites docs/guarantees.md, not the architecture brief outside the repo', () => {
    const offences = components
      .concat('test', 'bench', 'scripts')
      .flatMap(sources)
      .filter((f) => f !== 'test/unit/house-rules.test.ts')
      .filter((f) => readFileSync(join(root, f), 'utf8').includes('ARCHITECTURE'));
    expect(offences).toEqual([]);
  });
});
