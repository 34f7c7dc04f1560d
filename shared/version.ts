/** The project's version, from package.json (inlined into the binaries by the bundler). */
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;

/** Defined as `true` by the binary build (scripts/binaries/build.ts); undeclared when run from source. */
declare const STREAMFLEET_BUNDLE: boolean | undefined;

/** How this program runs: as a single-file executable, or from source under Node. */
export const BUILD_KIND: 'single executable' | 'from source' =
  typeof STREAMFLEET_BUNDLE !== 'undefined' && STREAMFLEET_BUNDLE ? 'single executable' : 'from source';

/** The binary target matching this process: linux-x64, linux-arm64, linux-armv7l (Node calls it arm). */
export const TARGET = `${process.platform}-${process.arch === 'arm' ? 'armv7l' : process.arch}`;

/** The one-line answer to --version. */
export function versionLine(program: string): string {
  return `${program} ${VERSION} (node ${process.version}, ${TARGET}, ${BUILD_KIND})`;
}
