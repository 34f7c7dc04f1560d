/**
 * Builds the agent's single-file executables with Node's single executable
 * applications (SEA), offline except for the npm registry:
 *
 *   device/cli.ts --esbuild--> one CommonJS file (Lua scripts inlined)
 *     --node --experimental-sea-config (the target's own Node, under qemu for ARM)--> SEA blob
 *     --postject--> injected into a stripped copy of that same Node binary
 *
 * Pitfalls this order avoids (docs/binaries.md): the blob must come from a
 * Node of exactly the binary's version and word size (a blob from a 64-bit
 * Node aborts the 32-bit binary), so each target generates its own blob with
 * its own Node; stripping after injection destroys the blob, so strip first;
 * a code cache or snapshot is tied to the generating machine, so both are off.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { quietDebug } from '#shared/process/bundle.mjs';
import { SCRIPT_FILES, scriptSource } from '#shared/redis/scripts.js';
import { VERSION } from '#shared/version.js';
import { agentSchema, ENV_PREFIX } from '../../device/config.js';
import { exampleConfig } from './example-config.js';
import { binaryName, commandFor, TARGETS, type Target, type TargetName } from './targets.js';
import { ensureToolchain } from './toolchain.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * V8 flags baked into the binaries (where the SEA config supports execArgv;
 * linux-armv7l gets the heap flags from install.sh's NODE_OPTIONS drop-in).
 * Measured in bench/binaries.ts and docs/binaries.md:
 * - --lite-mode (no optimizing compiler, lazy feedback allocation): the
 *   largest lever, about 9 MB less private memory and 8 MB less mapped code;
 *   it costs CPU only at rates far above a board's sensors (+1 point of one
 *   core at 1000 msg/s on x64).
 * - a 1 MB young generation: the agent's garbage (one envelope per sample)
 *   dies young, so a small nursery is collected often and cheaply.
 * - an old-space cap: a leak fails loudly (systemd restarts the agent, which
 *   resumes from its sequence file and journal) instead of eating the board.
 */
export const SEA_EXEC_ARGV = [
  '--no-deprecation',
  '--lite-mode',
  '--max-semi-space-size=1',
  '--max-old-space-size=96',
];

/** Packages the agent must never carry (gateway-only); the build fails if one is bundled. */
const FORBIDDEN_IN_AGENT = ['aedes', 'mqtt', 'mqtt-packet'];

/** The SEA fuse every Node release uses (documented in Node's single-executable-applications page). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

export interface BuildOptions {
  targets: readonly TargetName[];
  outDir?: string;
  cacheDir?: string;
  /** An agent bundle made earlier by bundleAgent (the repeatability test feeds one bundle to two builds). */
  bundleFile?: string;
  log?: (line: string) => void;
}

export interface BuiltBinary {
  target: TargetName;
  nodeVersion: string;
  file: string;
  bytes: number;
  sha256: string;
  ms: number;
}

export interface BuildResult {
  bundle: { bytes: number; sha256: string; ms: number };
  binaries: BuiltBinary[];
  totalMs: number;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Children get a clean Node environment: no inherited NODE_OPTIONS (tsx, vitest) may reach a blob. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

function run(cmd: string, args: readonly string[], cwd?: string): void {
  try {
    execFileSync(cmd, args, { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; stdout?: Buffer; message: string };
    throw new Error(
      `${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stdout?.toString() ?? ''}${e.stderr?.toString() ?? ''}`,
    );
  }
}

/** Bundles the agent into one CommonJS file (an ESM main cannot be a SEA main). */
export async function bundleAgent(outFile: string): Promise<{ bytes: number; ms: number }> {
  const started = performance.now();
  // Expanded (fragments included), so the binary needs neither the scripts nor their lib/ beside it.
  const sources = Object.fromEntries(SCRIPT_FILES.map((f) => [f, scriptSource(f)]));
  const inline: esbuild.Plugin = {
    name: 'streamfleet-entry',
    setup(build) {
      build.onResolve({ filter: /^streamfleet:/ }, (args) => ({ path: args.path, namespace: 'streamfleet' }));
      build.onLoad({ filter: /.*/, namespace: 'streamfleet' }, (args) => {
        if (args.path === 'streamfleet:scripts') {
          // Runs before the agent's modules (imported first), so no script is ever read from disk.
          return {
            contents: `import { provideScriptSources } from '#shared/redis/scripts.js';\nprovideScriptSources(${JSON.stringify(sources)});\n`,
            resolveDir: ROOT,
            loader: 'js',
          };
        }
        return {
          contents: `import 'streamfleet:scripts';\nimport './device/cli.js';\n`,
          resolveDir: ROOT,
          loader: 'js',
        };
      });
    },
  };
  const result = await esbuild.build({
    entryPoints: ['streamfleet:entry'],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    // The oldest Node a target carries (linux-armv7l: 20.11).
    target: 'node20.11',
    outfile: outFile,
    // ioredis calls `debug` for every command; off, the quiet logger builds no arguments for it.
    plugins: [inline, quietDebug],
    define: { 'import.meta.url': '__streamfleet_import_meta_url', STREAMFLEET_BUNDLE: 'true' },
    banner: { js: 'var __streamfleet_import_meta_url = require("url").pathToFileURL(__filename).href;' },
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'eof',
    metafile: true,
    logLevel: 'silent',
    absWorkingDir: ROOT,
  });
  for (const w of result.warnings) {
    const [text] = await esbuild.formatMessages([w], { kind: 'warning' });
    process.stderr.write(text ?? '');
  }
  const carried = Object.keys(result.metafile.inputs).filter((input) =>
    FORBIDDEN_IN_AGENT.some((pkg) => input.includes(`node_modules/${pkg}/`)),
  );
  if (carried.length > 0) {
    throw new Error(
      `the agent bundle pulls in gateway-only modules (${carried.slice(0, 3).join(', ')}): ` +
        'device/ must not import the MQTT stack',
    );
  }
  return { bytes: readFileSync(outFile).length, ms: performance.now() - started };
}

/** The target's Node binary from its npm package, downloaded once into the cache and checked. */
export function nodeBinary(target: Target, cacheDir: string): string {
  const dir = join(cacheDir, `${target.nodePackage}-${target.nodeVersion}`);
  const bin = join(dir, 'node');
  if (existsSync(bin)) return bin;
  const tmp = `${dir}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  run('npm', ['pack', '--silent', `${target.nodePackage}@${target.nodeVersion}`, '--pack-destination', tmp]);
  const tgz = join(tmp, `${target.nodePackage}-${target.nodeVersion}.tgz`);
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
  if (integrity !== target.integrity) {
    throw new Error(
      `${target.nodePackage}@${target.nodeVersion} has integrity ${integrity}, expected ${target.integrity}`,
    );
  }
  run('tar', ['-xzf', tgz, '-C', tmp, 'package/bin/node']);
  mkdirSync(dir, { recursive: true });
  renameSync(join(tmp, 'package/bin/node'), bin);
  rmSync(tmp, { recursive: true, force: true });
  return bin;
}

async function buildTarget(
  target: Target,
  bundleFile: string,
  workDir: string,
  outDir: string,
  cacheDir: string,
): Promise<BuiltBinary> {
  const started = performance.now();
  const dir = join(workDir, target.name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const exe = join(dir, 'node');
  copyFileSync(nodeBinary(target, cacheDir), exe);
  chmodSync(exe, 0o755);
  // Strip before injecting: strip rewrites the ELF and would drop the injected note.
  run(target.strip, ['--strip-all', exe]);
  copyFileSync(bundleFile, join(dir, 'agent.cjs'));
  const seaConfig = {
    main: 'agent.cjs',
    output: 'sea-prep.blob',
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    useCodeCache: false,
    ...(target.seaExecArgv ? { execArgv: SEA_EXEC_ARGV } : {}),
  };
  writeFileSync(join(dir, 'sea-config.json'), `${JSON.stringify(seaConfig, null, 2)}\n`);
  const gen = commandFor(target, exe, ['--experimental-sea-config', 'sea-config.json']);
  run(gen.cmd, gen.args, dir);
  run(process.execPath, [
    join(ROOT, 'node_modules/postject/dist/cli.js'),
    exe,
    'NODE_SEA_BLOB',
    join(dir, 'sea-prep.blob'),
    '--sentinel-fuse',
    SEA_FUSE,
  ]);
  const file = join(outDir, binaryName(target.name));
  renameSync(exe, file);
  const data = readFileSync(file);
  return {
    target: target.name,
    nodeVersion: target.nodeVersion,
    file,
    bytes: data.length,
    sha256: sha256(data),
    ms: performance.now() - started,
  };
}

export async function buildBinaries(options: BuildOptions): Promise<BuildResult> {
  const started = performance.now();
  const log = options.log ?? (() => {});
  const outDir = options.outDir ?? join(ROOT, 'dist/bin');
  const cacheDir = options.cacheDir ?? join(ROOT, 'dist/cache');
  const targets = options.targets.map((t) => TARGETS[t]);
  ensureToolchain(targets, log);
  const workDir = join(outDir, '.work');
  mkdirSync(workDir, { recursive: true });
  const bundleFile = join(workDir, 'agent.cjs');
  let bundle: { bytes: number; ms: number };
  if (options.bundleFile) {
    copyFileSync(options.bundleFile, bundleFile);
    bundle = { bytes: readFileSync(bundleFile).length, ms: 0 };
  } else {
    bundle = await bundleAgent(bundleFile);
  }
  const bundleSha256 = sha256(readFileSync(bundleFile));
  log(
    `bundle ${relative(ROOT, bundleFile)}: ${(bundle.bytes / 1024).toFixed(0)} KiB in ${bundle.ms.toFixed(0)} ms`,
  );
  const binaries: BuiltBinary[] = [];
  for (const target of targets) {
    const b = await buildTarget(target, bundleFile, workDir, outDir, cacheDir);
    log(
      `${relative(ROOT, b.file)}: node ${b.nodeVersion}, ${(b.bytes / 2 ** 20).toFixed(1)} MiB, ` +
        `sha256 ${b.sha256.slice(0, 16)}…, ${(b.ms / 1000).toFixed(1)} s`,
    );
    binaries.push(b);
  }
  rmSync(workDir, { recursive: true, force: true });
  // What a board needs beside the binary: install script, systemd unit, commented example config.
  copyFileSync(join(ROOT, 'deploy/install.sh'), join(outDir, 'install.sh'));
  chmodSync(join(outDir, 'install.sh'), 0o755);
  copyFileSync(join(ROOT, 'deploy/streamfleet-agent.service'), join(outDir, 'streamfleet-agent.service'));
  writeFileSync(
    join(outDir, 'agent.example.yaml'),
    exampleConfig(agentSchema, ENV_PREFIX, `streamfleet agent ${VERSION}: example config`),
  );
  const manifest = {
    agentVersion: VERSION,
    bundleSha256,
    binaries: binaries.map(({ target, nodeVersion, bytes, sha256 }) => ({
      file: binaryName(target),
      target,
      nodeVersion,
      bytes,
      sha256,
    })),
  };
  writeFileSync(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return { bundle: { sha256: bundleSha256, ...bundle }, binaries, totalMs: performance.now() - started };
}
