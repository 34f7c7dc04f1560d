import type { Plugin } from 'esbuild';

/** shared/process/bundle.mjs: one of our TypeScript entries bundled into one ES module's text. */
export function bundleModule(entry: string): Promise<string>;

/** esbuild plugin: every package's `debug` is shared/process/quiet-debug.cjs. */
export const quietDebug: Plugin;
