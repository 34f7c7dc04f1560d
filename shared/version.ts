/** The project's version, from package.json (inlined into the binaries by the bundler). */
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
