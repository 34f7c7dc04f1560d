/**
 * The start of every command-line program: parse flags, answer --help and
 * --version, load and validate the config, and turn any failure into one clear
 * line on stderr with exit code 2 (never a stack trace for a user's mistake).
 */
import { ConfigError, describeError, FleetError } from '../errors.js';
import { versionLine } from '../version.js';
import { helpText, type ParsedCli, parseCli } from './cli.js';
import { loadConfig } from './load.js';
import type { ConfigOf, Schema } from './schema.js';

export interface ProgramSpec<S extends Schema> {
  name: string;
  usage: string;
  schema: S;
  envPrefix: string;
  extraBooleans?: readonly string[];
  /** Whether the program takes arguments besides options (subcommands); stray words are refused otherwise. */
  positionals?: boolean;
}

export interface Started<S extends Schema> {
  config: ConfigOf<S>;
  cli: ParsedCli;
}

export function startProgram<S extends Schema>(
  spec: ProgramSpec<S>,
  argv = process.argv.slice(2),
): Started<S> {
  try {
    const cli = parseCli(spec.schema, argv, spec.extraBooleans);
    if (cli.help) {
      process.stdout.write(`${helpText(spec.usage, spec.schema, spec.envPrefix)}\n`);
      process.exit(0);
    }
    if (cli.version) {
      process.stdout.write(`${versionLine(spec.name)}\n`);
      process.exit(0);
    }
    if (!spec.positionals && cli.positionals.length > 0) {
      throw new ConfigError(
        'flags',
        'command line',
        `unexpected argument "${cli.positionals[0]}": every option is --name value (run with --help for the options)`,
      );
    }
    const config = loadConfig(spec.schema, spec.envPrefix, {
      file: cli.configFile,
      env: process.env,
      flags: cli.flags,
    });
    return { config, cli };
  } catch (err) {
    exitWithError(spec.name, err);
  }
}

/** Prints one clear line and exits 2 for expected failures; unexpected ones keep their stack. */
export function exitWithError(program: string, err: unknown): never {
  if (err instanceof FleetError) {
    process.stderr.write(`${program}: ${describeError(err)}\n`);
    process.exit(2);
  }
  process.stderr.write(
    `${program}: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
}

/**
 * Graceful stop on SIGTERM/SIGINT: runs `stop` once, then exits 0, or 3 when
 * it reports entries it could not hand over (so a supervisor can tell).
 */
export function stopOnSignals(
  program: string,
  logger: { info(obj: object, msg: string): void },
  stop: () => Promise<{ unsent: number }>,
): void {
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    stop().then(
      ({ unsent }) => process.exit(unsent > 0 ? 3 : 0),
      (err: unknown) => exitWithError(program, err),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
