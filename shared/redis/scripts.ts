/**
 * The one loader of the project's Redis scripts. Each script is a .lua file
 * named <command>-<numberOfKeys>.lua with a KEYS/ARGV/result header (<command>-n.lua
 * when the count varies: the caller passes it first, as EVALSHA takes it); this
 * module registers them with ioredis `defineCommand`, which sends EVALSHA and
 * falls back to EVAL when the server does not have the script cached (after a
 * restart or on a new cluster node).
 *
 * Shared fragments (scripts/lib/<name>.lua: publish-once, the terminal-status
 * check, ...) are written once and included at load time: a line
 * `-- #include <name>` is replaced by the fragment's text before SCRIPT LOAD,
 * so what runs on the server is one self-contained script, and scriptSource()
 * returns that expanded text. A fragment is included at most once per script.
 *
 * Script sources are read once; the binary build inlines the expanded sources
 * (see scripts/binaries/build.ts) so the executable needs no files beside it.
 */
import { readFileSync } from 'node:fs';
import { Cluster, type Redis } from 'ioredis';
import { ScriptError } from '../errors.js';

/** File names of every script, <command>-<numberOfKeys>.lua (or -n.lua: the caller passes the count). */
export const SCRIPT_FILES = [
  'appendTelemetry-n.lua',
  'appendTelemetryRaw-n.lua',
  'trimStream-1.lua',
  'projectState-1.lua',
  'enqueueCommand-3.lua',
  'publishOnce-2.lua',
  'beginCommand-1.lua',
  'finishCommand-1.lua',
  'concludeCommand-6.lua',
  'replayCommand-3.lua',
  'expireQueuedCommand-2.lua',
] as const;

type Client = Redis | Cluster;

let sources: Map<string, string> | undefined;

/** Hook for bundlers: provide sources instead of reading files. */
export function provideScriptSources(files: Record<string, string>): void {
  sources = new Map(Object.entries(files));
  expanded.clear();
}

function rawSource(file: string): string {
  sources ??= new Map();
  let text = sources.get(file);
  if (text === undefined) {
    text = readFileSync(new URL(`./scripts/${file}`, import.meta.url), 'utf8');
    sources.set(file, text);
  }
  return text;
}

const INCLUDE = /^-- #include (\w+)[ \t]*$/gm;
const NESTED_INCLUDE = /^-- #include /m;
const expanded = new Map<string, string>();

/** A script's text as sent to the server: every `-- #include <name>` line replaced by lib/<name>.lua. */
export function scriptSource(file: string): string {
  let text = expanded.get(file);
  if (text === undefined) {
    const seen = new Set<string>();
    text = rawSource(file).replace(INCLUDE, (_line, name: string) => {
      // Fragments define local functions: a second copy would shadow the first for nothing.
      if (seen.has(name)) throw new TypeError(`${file} includes lib/${name}.lua twice`);
      seen.add(name);
      const fragment = rawSource(`lib/${name}.lua`);
      if (NESTED_INCLUDE.test(fragment))
        throw new TypeError(`lib/${name}.lua may not include other fragments`);
      return fragment.trimEnd();
    });
    expanded.set(file, text);
  }
  return text;
}

const defined = new WeakSet<Client>();

/** Registers every script on the client (idempotent per client). */
export function defineScripts(client: Client): void {
  if (defined.has(client)) return;
  for (const file of SCRIPT_FILES) {
    const m = /^(\w+)-(\d+|n)\.lua$/.exec(file);
    if (!m) throw new TypeError(`script file name ${file} must be <command>-<numberOfKeys or n>.lua`);
    // A script named like a client method (sendCommand, pipeline, ...) would silently replace it.
    if (m[1]! in client)
      throw new TypeError(`script ${file} would shadow the client method ${m[1]}; rename it`);
    const numberOfKeys = m[2] === 'n' ? undefined : Number(m[2]);
    client.defineCommand(m[1]!, { numberOfKeys, lua: scriptSource(file) });
  }
  defined.add(client);
  // Load the scripts on every (re)connection before any batch can use them. EVALSHA's
  // NOSCRIPT fallback resends a command as EVAL behind the commands sent after it, which
  // would let a later batch overtake an earlier one (per-device order).
  const preload = () => void loadScripts(client).catch(() => {});
  client.on('ready', preload);
  if (client.status === 'ready') preload();
}

/** SCRIPT LOAD of every script on the server, or on every master of a cluster. */
export async function loadScripts(client: Client): Promise<void> {
  const servers = client instanceof Cluster ? client.nodes('master') : [client];
  await Promise.all(
    servers.flatMap((server) => SCRIPT_FILES.map((file) => server.script('LOAD', scriptSource(file)))),
  );
}

// How Redis and Valkey word a script that did not compile or raised while running
// (the reply error's text is the only signal; both keep the "user_script" chunk name).
const SCRIPT_FAILURE = /Error compiling script|Error running script|user_script:\d+/;

/** The typed error for a reply error raised by one of our scripts; undefined for any other error. */
export function scriptErrorOf(err: unknown, script: string): ScriptError | undefined {
  if (err instanceof ScriptError) return err;
  if (!(err instanceof Error) || !SCRIPT_FAILURE.test(err.message)) return undefined;
  return new ScriptError(script, err.message, { cause: err });
}

/** Typed access to the scripts once defined. */
export interface ScriptCommands {
  /** numberOfKeys, then per partition its stream, sequence state and (optional) state hash, maxGaps, one batch per partition (appendTelemetry-n.lua). */
  appendTelemetry(
    numberOfKeys: number,
    ...keysAndArgs: (string | number)[]
  ): Promise<[number, number, number]>;
  /** Lag-aware retention step on one stream: called by name through gateway/retention/trim-script.ts. */
  trimStream(stream: string, ...args: (string | number)[]): Promise<Array<string | number>>;
  /** Folds one device's readings into its partition's latest-state hash: [applied, stale]. */
  projectState(
    stateKey: string,
    deviceId: string,
    arrival: number,
    ...readings: string[]
  ): Promise<[number, number]>;
  enqueueCommand(
    stream: string,
    ledger: string,
    doorbell: string,
    ...args: (string | number)[]
  ): Promise<[number, string]>;
  publishOnce(stream: string, marker: string, ...args: (string | number)[]): Promise<[number, string]>;
  beginCommand(ledger: string, ...args: (string | number)[]): Promise<[string, number, string, string]>;
  finishCommand(ledger: string, ...args: (string | number)[]): Promise<[number, string]>;
  /**
   * Standalone only (its keys span slots): ledger finish + publish once (+ dead letter) + XACK in one
   * call; see concludeCommand-6.lua: [fixed, concluded, storedWhenNotConcluded, resultAdded, deadLetterAdded].
   */
  concludeCommand(
    ledger: string,
    results: string,
    resultsMarker: string,
    deadLetters: string,
    deadLetterMarker: string,
    commandStream: string,
    ...args: (string | number)[]
  ): Promise<[number, number, string, number, number]>;
  /** Queues a dead letter's replay once, with its durable record: [1|0, replayId, entryId, replayedAt]. */
  replayCommand(
    stream: string,
    ledger: string,
    record: string,
    ...args: (string | number)[]
  ): Promise<[number, string, string, string]>;
  /** Ends a still-`queued`, unread command past its deadline as `expired`: [1, result] or [0, status | 'received']. */
  expireQueuedCommand(
    ledger: string,
    stream: string,
    ...args: (string | number)[]
  ): Promise<[number, string]>;
}

export function scripts(client: Client): ScriptCommands {
  defineScripts(client);
  return client as unknown as ScriptCommands;
}
