/**
 * How the projection thread's code is loaded. The gateway runs from its
 * TypeScript sources (`npm run gateway`: tsx). Registering tsx again inside
 * the worker (what this replaced) gives the thread a loader of its own, with
 * its own module-hooks thread and the transformed sources of every module
 * cached there: about 38 MB of the idle gateway's 155 MB RSS. Instead the
 * worker's entry is bundled once at start (esbuild, which tsx itself uses, so
 * it is installed wherever the gateway runs) into one ES module held in
 * memory, with its packages inside: the thread then loads no TypeScript and
 * registers no loader. A compiled build (the entry is `.js`) loads worker.js
 * directly. Each module keeps its own `import.meta.url` (the Lua scripts are
 * read relative to theirs, shared/redis/scripts.ts).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Plugin } from 'esbuild';

export type WorkerEntry = { kind: 'file'; url: URL } | { kind: 'code'; code: string };

let bundled: Promise<string> | undefined;

/** The worker's entry: worker.js next to this file, or worker.ts bundled into one module (once per process). */
export function projectionWorkerEntry(): Promise<WorkerEntry> {
  const here = new URL(import.meta.url);
  if (!here.pathname.endsWith('.ts'))
    return Promise.resolve({ kind: 'file', url: new URL('./worker.js', here) });
  bundled ??= bundle(fileURLToPath(new URL('./worker.ts', here)));
  return bundled.then((code) => ({ kind: 'code', code }));
}

async function bundle(entry: string): Promise<string> {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    logLevel: 'silent',
    plugins: [keepModuleUrls],
    // CommonJS packages inside an ES module still call require() for Node's own modules.
    banner: {
      js: `import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(${JSON.stringify(entry)});`,
    },
  });
  const out = result.outputFiles[0];
  if (!out) throw new TypeError('bundling the projection worker produced no output');
  return out.text;
}

/** Our modules' `import.meta.url` stays the URL of their source file, as when tsx runs them. */
const keepModuleUrls: Plugin = {
  name: 'keep-module-urls',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      const url = JSON.stringify(pathToFileURL(args.path).href);
      return { contents: text.replaceAll('import.meta.url', url), loader: 'ts' };
    });
  },
};
