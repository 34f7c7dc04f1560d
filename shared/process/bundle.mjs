/**
 * Bundles one of our TypeScript entries, with the packages it imports, into one
 * ES module (esbuild, which tsx itself uses: it is installed wherever the
 * programs run). Plain JavaScript, so that scripts/launch.mjs can use it before
 * any TypeScript loader exists; the projection thread uses it too
 * (gateway/projection/worker-entry.ts).
 *
 * Each of our modules keeps its own `import.meta.url`, the URL of its source
 * file, as when tsx runs it: the Lua scripts, the dashboard's files and the
 * built-in mappings are read relative to it (shared/redis/scripts.ts).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** @param {string} entry absolute path of a .ts module @returns {Promise<string>} the bundle's text */
export async function bundleModule(entry) {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    logLevel: 'silent',
    plugins: [keepModuleUrls, quietDebug],
    // Loaded from node_modules when a bundle needs it (the projection thread's own bundle): it cannot be bundled.
    external: ['esbuild'],
    // CommonJS packages inside an ES module still call require() for Node's own modules.
    banner: {
      js: `import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(${JSON.stringify(entry)});`,
    },
  });
  const out = result.outputFiles[0];
  if (!out) throw new TypeError(`bundling ${entry} produced no output`);
  return out.text;
}

/** Our modules' `import.meta.url` stays the URL of their source file. */
const keepModuleUrls = {
  name: 'keep-module-urls',
  /** @param {import('esbuild').PluginBuild} b */
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      const url = JSON.stringify(pathToFileURL(args.path).href);
      return { contents: text.replaceAll('import.meta.url', url), loader: 'ts' };
    });
  },
};

const QUIET_DEBUG = fileURLToPath(new URL('./quiet-debug.cjs', import.meta.url));

/**
 * Every package's `debug` is ./quiet-debug.cjs, which itself loads the real one (also in the
 * agent's single binaries: scripts/binaries/build.ts).
 */
export const quietDebug = {
  name: 'quiet-debug',
  /** @param {import('esbuild').PluginBuild} b */
  setup(b) {
    b.onResolve({ filter: /^debug$/ }, (args) =>
      args.importer === QUIET_DEBUG ? undefined : { path: QUIET_DEBUG },
    );
  },
};
