/** shared/process/bundle.mjs: one of our TypeScript entries bundled into one ES module's text. */
export function bundleModule(entry: string): Promise<string>;
