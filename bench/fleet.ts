/**
 * `npm run bench -- fleet`: the seed's case study as a load scenario.
 *
 * 2,000 simulated delivery drones (GPS 10 Hz + battery 1 Hz: ~22,000 msg/s),
 * half agent devices and half MQTT-only firmware, for 60 s against one Redis
 * and one gateway (broker mode) on this machine, while this process sends 100
 * commands/s, half to agent devices that run the command worker and half to
 * MQTT devices. Redis, the gateway and the fleet (firmware-sim/cli.ts) each
 * run as their own process.
 *
 *   offered_per_s          what the profile offers (devices x 11 msg/s)
 *   sent_per_s             what the simulator managed to send (below offered when it falls behind)
 *   ingested_per_s         entries the telemetry streams gained per second over the steady window
 *                          (commands running, every device up); ingested_vs_offered = that / offered_per_s
 *   ingested_per_s_whole_run  entries of the fleet read back from the streams / run time (ramp-up included)
 *   lost                   acknowledged readings missing from the streams (read back by device and seq)
 *   duplicates             (device, seq) pairs stored more than once
 *   ingest_p50_ms/p99_ms   device time -> entry id time, over every stored entry
 *   ingest_window_*        the same over the entries stored during the steady window
 *   command_p50_ms/p99_ms  send -> terminal result seen by the sender (ResultWatcher);
 *                          command_agent_p99_ms and command_mqtt_p99_ms split it by device kind
 *   gateway_rss_mb         the gateway process's peak resident memory (VmHWM)
 *   redis_used_memory_mb   INFO memory used_memory at the end of the run
 *   gateway_heap_*, gateway_gc_share  its V8 heap at the end of that window, and the share of it spent in GC
 *   cpu_*                  share of one core each process used while commands ran (from /proc);
 *                          cpu_gateway_main_thread: the gateway's event-loop thread alone (the rest of
 *                          cpu_gateway is the projection thread, GC and libuv threads)
 *   eld_*_p99_ms           event-loop delay p99 of the gateway, the simulator and this process over that window
 *
 * Env: FLEET_BENCH_DEVICES (2000), FLEET_BENCH_SECONDS (60), FLEET_BENCH_COMMANDS (100 per s),
 * FLEET_BENCH_COMMAND_AGENTS (50): a smoke run is FLEET_BENCH_DEVICES=100 FLEET_BENCH_SECONDS=10.
 * FLEET_BENCH_GATEWAY_SET='key=value,...': extra gateway options (experiments, e.g. projection.enabled=false).
 * FLEET_BENCH_GATEWAY_NODE_OPTIONS='--flag ...': node/V8 flags for the gateway alone (experiments).
 * FLEET_BENCH_CPU_PROF=DIR: CPU profiles of the gateway and the simulator over that window, written into DIR.
 * FLEET_BENCH_HEAP_PROF=DIR: allocation profiles (sampled, garbage included) of both over that window instead.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { ResultWatcher } from '#shared/commands/send.js';
import { flagName } from '#shared/config/schema.js';
import { FIELD } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import type { Summary } from '../firmware-sim/cli.js';
import { quantile } from '../firmware-sim/ledger.js';
import { runProgram } from '../test/harness/agent-process.js';
import { freePort } from '../test/harness/ports.js';
import { waitForPort } from '../test/harness/process.js';
import { startLocalRedis } from '../test/harness/redis-server.js';

const env = (name: string, fallback: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};
const PREFIX = 'benchf';

/** One fleet run's shape; `npm run bench -- fleet` takes it from the environment, fleet-scale sets it per step. */
export interface FleetRun {
  devices: number;
  seconds: number;
  commandsPerS: number;
  commandAgents: number;
  /** Extra gateway options, `key=value,...` (experiments, e.g. projection.enabled=false). */
  gatewaySet: string;
}

export function fleetRunFromEnv(): FleetRun {
  return {
    devices: env('FLEET_BENCH_DEVICES', 2000),
    seconds: env('FLEET_BENCH_SECONDS', 60),
    commandsPerS: env('FLEET_BENCH_COMMANDS', 100),
    commandAgents: env('FLEET_BENCH_COMMAND_AGENTS', 50),
    gatewaySet: process.env.FLEET_BENCH_GATEWAY_SET ?? '',
  };
}

/** Peak resident memory of a process, from /proc (VmHWM), in MiB. */
function peakRssMb(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** utime + stime of a process, in ms (clock ticks are 10 ms on Linux). */
function cpuMs(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** utime + stime of a process's main thread (its tid is its pid), in ms: the rest is its worker and V8/libuv threads. */
function mainThreadCpuMs(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** Entries in the telemetry streams now (sum of XLEN over the partitions). */
async function storedEntries(client: Redis, keys: Keys): Promise<number> {
  const lengths = await Promise.all(keys.allTelemetryStreams().map((s) => client.xlen(s)));
  return lengths.reduce((a, b) => a + b, 0);
}

/**
 * Ingest latency (stream entry id minus reading time, ms) of the entries stored during the
 * steady window, sorted, overall and by device kind (ids d-a-* agents, d-m-* MQTT). The
 * fleet's own audit takes every entry of the run, the ramp-up's too: an MQTT device's
 * readings wait in its RAM queue until its connection is up, which is startup, not load.
 * (The fleet runs without clock skew, so reading times are true times.)
 */
async function windowLatencies(
  client: Redis,
  keys: Keys,
  fromMs: number,
  toMs: number,
): Promise<Record<'all' | 'agent' | 'mqtt', Float64Array>> {
  const all: number[] = [];
  const agent: number[] = [];
  const mqtt: number[] = [];
  for (const stream of keys.allTelemetryStreams()) {
    let start = String(fromMs);
    for (;;) {
      const page = await client.xrange(stream, start, String(toMs), 'COUNT', 10_000);
      for (const [id, fields] of page) {
        let device = '';
        let time = Number.NaN;
        for (let i = 0; i + 1 < fields.length; i += 2) {
          if (fields[i] === FIELD.deviceId) device = fields[i + 1]!;
          else if (fields[i] === FIELD.time) time = Number(fields[i + 1]);
        }
        const ms = Number(id.slice(0, id.indexOf('-'))) - time;
        if (!Number.isFinite(ms)) continue;
        all.push(ms);
        if (device.startsWith('d-a-')) agent.push(ms);
        else if (device.startsWith('d-m-')) mqtt.push(ms);
      }
      if (page.length < 10_000) break;
      start = `(${page[page.length - 1]![0]}`;
    }
  }
  const sorted = (xs: number[]) => Float64Array.from(xs).sort();
  return { all: sorted(all), agent: sorted(agent), mqtt: sorted(mqtt) };
}

/** The event-loop delay lines bench/_eld-preload.mjs wrote into a child's output, in order. */
function eldReports(output: string): Array<{ p50: number; p99: number; max: number }> {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{"eld"'))
    .map((l) => (JSON.parse(l) as { eld: { p50: number; p99: number; max: number } }).eld);
}

/** Values of the gateway's process metrics (prom-client defaults): what its memory holds, its GC time. */
async function gatewayMetrics(
  port: number,
): Promise<Record<'heap_used_mb' | 'heap_total_mb' | 'external_mb' | 'rss_mb' | 'gc_s', number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const value = (re: RegExp) => {
    let sum = 0;
    for (const m of text.matchAll(re)) sum += Number(m[1]);
    return sum;
  };
  return {
    heap_used_mb: value(/^nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)$/gm) / 2 ** 20,
    heap_total_mb: value(/^nodejs_heap_size_total_bytes(?:\{[^}]*\})? (\S+)$/gm) / 2 ** 20,
    external_mb: value(/^nodejs_external_memory_bytes(?:\{[^}]*\})? (\S+)$/gm) / 2 ** 20,
    rss_mb: value(/^process_resident_memory_bytes(?:\{[^}]*\})? (\S+)$/gm) / 2 ** 20,
    gc_s: value(/^nodejs_gc_duration_seconds_sum\{[^}]*\} (\S+)$/gm),
  };
}

/** Environment of the gateway and the simulator: the event-loop delay (and profile) preload. */
function childEnv(): Record<string, string> {
  const preload = `--import=${new URL('./_eld-preload.mjs', import.meta.url).href}`;
  const env: Record<string, string> = {
    NODE_OPTIONS: [process.env.NODE_OPTIONS ?? '', preload].join(' ').trim(),
  };
  if (process.env.FLEET_BENCH_CPU_PROF) env.BENCH_CPU_PROF_DIR = process.env.FLEET_BENCH_CPU_PROF;
  else if (process.env.FLEET_BENCH_HEAP_PROF) env.BENCH_HEAP_PROF_DIR = process.env.FLEET_BENCH_HEAP_PROF;
  return env;
}

/** Sends `rate` commands/s round-robin over `targets` until `until`; returns send -> result latencies. */
async function commandLoad(
  client: Redis,
  keys: Keys,
  targets: readonly string[],
  rate: number,
  until: number,
): Promise<{
  latencies: number[];
  byKind: Record<'agent' | 'mqtt', number[]>;
  failed: number;
  statuses: Record<string, number>;
}> {
  const watcher = new ResultWatcher(client, keys, 500);
  await watcher.start();
  const latencies: number[] = [];
  const byKind: Record<'agent' | 'mqtt', number[]> = { agent: [], mqtt: [] };
  const statuses: Record<string, number> = {};
  let failed = 0;
  const pending: Promise<void>[] = [];
  const started = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * rate);
      for (; sent < due; sent++) {
        const device = targets[sent % targets.length]!;
        const t0 = performance.now();
        pending.push(
          watcher.sendAndWait(device, { name: 'ping', ttlMs: 30_000 }, 35_000).then(
            ({ result }) => {
              statuses[result.status] = (statuses[result.status] ?? 0) + 1;
              if (result.status === 'succeeded') {
                const ms = performance.now() - t0;
                latencies.push(ms);
                byKind[device.startsWith('d-a-') ? 'agent' : 'mqtt'].push(ms);
              } else failed++;
            },
            () => {
              failed++;
            },
          ),
        );
      }
      if (Date.now() >= until) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await Promise.all(pending);
  await watcher.stop();
  return { latencies, byKind, failed, statuses };
}

export function run(): Promise<Record<string, unknown>> {
  return runFleet(fleetRunFromEnv());
}

/** Redis, the gateway and the fleet as their own processes, commands from here; the figures of one run. */
export async function runFleet(shape: FleetRun): Promise<Record<string, unknown>> {
  const {
    devices: DEVICES,
    seconds: SECONDS,
    commandsPerS: COMMANDS_PER_S,
    commandAgents: COMMAND_AGENTS,
  } = shape;
  const RAMP_MS = Math.min(10_000, SECONDS * 200);
  const redis = await startLocalRedis();
  const dir = mkdtempSync(join(tmpdir(), 'bench-fleet-'));
  const port = await freePort();
  const metricsPort = await freePort();
  const gwArgs: string[] = [];
  for (const [key, value] of Object.entries({
    'gateway.id': 'bench-fleet',
    'broker.port': port,
    'redis.url': redis.url,
    'redis.keyPrefix': PREFIX,
    'log.level': 'warn',
    'metrics.port': metricsPort,
    ...Object.fromEntries(
      shape.gatewaySet
        .split(',')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    ),
  }))
    gwArgs.push(`--${flagName(key)}`, String(value));
  const env = childEnv();
  const gwNodeOptions = process.env.FLEET_BENCH_GATEWAY_NODE_OPTIONS;
  const gw = runProgram(
    'gateway',
    gwArgs,
    gwNodeOptions ? { ...env, NODE_OPTIONS: `${env.NODE_OPTIONS} ${gwNodeOptions}` } : env,
  );
  const client = new Redis(redis.url);
  const redisPid = Number(/process_id:(\d+)/.exec(await client.info('server'))?.[1]);
  const keys = new Keys(PREFIX);
  try {
    await waitForPort(port, '127.0.0.1', 30_000);
    const agents = Math.floor(DEVICES / 2);
    const mqtt = DEVICES - agents;
    const summaryFile = join(dir, 'summary.json');
    const fleet = runProgram(
      'sim',
      [
        '--redis-url',
        redis.url,
        '--redis-key-prefix',
        PREFIX,
        '--mqtt-url',
        `mqtt://127.0.0.1:${port}`,
        '--fleet-agents',
        String(agents),
        '--fleet-mqtt',
        String(mqtt),
        '--fleet-id-prefix',
        'd',
        '--fleet-profile',
        'drone',
        '--fleet-command-agents',
        String(Math.min(COMMAND_AGENTS, agents)),
        '--fleet-ramp-up',
        `${RAMP_MS}ms`,
        '--fleet-duration',
        `${SECONDS}s`,
        '--fleet-progress-interval',
        '5s',
        '--fleet-summary-file',
        summaryFile,
        '--log-level',
        'warn',
      ],
      env,
    );
    const runStarted = Date.now();
    // Commands once every device is up, until shortly before the fleet stops.
    await new Promise((r) => setTimeout(r, RAMP_MS + 1000));
    const targets: string[] = [];
    for (let i = 0; i < Math.max(COMMAND_AGENTS, 1); i++) {
      if (i < agents && i < COMMAND_AGENTS) targets.push(`d-a-${i}`);
      if (i < mqtt) targets.push(`d-m-${i}`);
    }
    // The steady window: CPU and event-loop delay of every process while commands run.
    const pids = { gateway: gw.child.pid, sim: fleet.child.pid, redis: redisPid, bench: process.pid };
    const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid)]));
    const gwMain0 = mainThreadCpuMs(gw.child.pid);
    const stored0 = await storedEntries(client, keys);
    const gm0 = await gatewayMetrics(metricsPort).catch(() => undefined);
    const w0 = performance.now();
    const w0Wall = Date.now();
    gw.child.kill('SIGUSR2');
    fleet.child.kill('SIGUSR2');
    const ownEld = monitorEventLoopDelay({ resolution: 1 });
    ownEld.enable();
    const commands = await commandLoad(
      client,
      keys,
      targets,
      COMMANDS_PER_S,
      runStarted + SECONDS * 1000 - 2000,
    );
    ownEld.disable();
    gw.child.kill('SIGUSR2');
    fleet.child.kill('SIGUSR2');
    const windowMs = performance.now() - w0;
    const w1Wall = Date.now();
    const stored1 = await storedEntries(client, keys);
    const gwMainShare = (mainThreadCpuMs(gw.child.pid) - gwMain0) / windowMs;
    const gm1 = await gatewayMetrics(metricsPort).catch(() => undefined);
    const cpuShare = Object.fromEntries(
      Object.entries(pids).map(([k, pid]) => [`cpu_${k}`, (cpuMs(pid) - cpu0[k]!) / windowMs]),
    );
    const fleetExit = await new Promise<number | null>((resolve) => {
      if (fleet.child.exitCode !== null) resolve(fleet.child.exitCode);
      else fleet.child.once('exit', (code) => resolve(code));
    });
    const gatewayRss = peakRssMb(gw.child.pid);
    // SIGTERM: the gateway exits cleanly (its profile is written); the steady window is its second report.
    await gw.kill('SIGTERM');
    const gwEld = eldReports(gw.output())[1];
    const simEld = eldReports(fleet.output())[1];
    const info = await client.info('memory');
    // Where Redis's time went: the costliest commands (calls/s and µs per call) over the whole run.
    const stats = [...(await client.info('commandstats')).matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g)]
      .map(([, name, calls, usec]) => ({ name: name!, calls: Number(calls), usec: Number(usec) }))
      .sort((x, y) => y.usec - x.usec)
      .slice(0, 6);
    const runSeconds = (Date.now() - runStarted) / 1000;
    const redisCommands = Object.fromEntries(
      stats.map((c) => [
        c.name,
        `${Math.round(c.calls / runSeconds)}/s, ${(c.usec / c.calls).toFixed(1)} µs, ${((c.usec / 1e6 / runSeconds) * 100).toFixed(1)}% core`,
      ]),
    );
    const usedMemory = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN) / 2 ** 20;
    let summary: Summary;
    try {
      summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as Summary;
    } catch {
      throw new Error(`the fleet wrote no summary (exit ${fleetExit}):\n${fleet.output().slice(-3000)}`);
    }
    const a = summary.audit!;
    const steady = await windowLatencies(client, keys, w0Wall, w1Wall);
    const kind = (k: string) => a.ingestByKind?.[k];
    const lat = Float64Array.from(commands.latencies).sort();
    const agentCmd = commands.statuses;
    return {
      devices: DEVICES,
      agents,
      mqtt_devices: mqtt,
      seconds: SECONDS,
      offered_per_s: Math.round(summary.offeredPerSecond),
      sent_per_s: Math.round(summary.sent / summary.seconds),
      // Over the steady window (every device up): what the streams gained per second. The whole
      // run's average includes the ramp-up, when devices are still being started.
      ingested_per_s: Math.round(((stored1 - stored0) * 1000) / windowMs),
      ingested_vs_offered: (stored1 - stored0) / (windowMs / 1000) / summary.offeredPerSecond,
      ingested_per_s_whole_run: Math.round(a.stored / summary.seconds),
      lost: a.lost,
      duplicates: a.duplicates,
      unacked_at_stop: a.unacked,
      dropped_on_devices: summary.dropped,
      dropped_agent: summary.byKind.agent.dropped,
      dropped_mqtt: summary.byKind.mqtt.dropped,
      samples_skipped: summary.skippedSamples,
      ingest_p50_ms: a.ingestP50Ms,
      ingest_p99_ms: a.ingestP99Ms,
      ingest_agent_p50_ms: kind('agent')?.p50Ms,
      ingest_agent_p99_ms: kind('agent')?.p99Ms,
      ingest_mqtt_p50_ms: kind('mqtt')?.p50Ms,
      ingest_mqtt_p99_ms: kind('mqtt')?.p99Ms,
      ingest_max_ms: a.ingestMaxMs,
      ingest_window_p50_ms: quantile(steady.all, 0.5),
      ingest_window_p99_ms: quantile(steady.all, 0.99),
      ingest_window_agent_p99_ms: quantile(steady.agent, 0.99),
      ingest_window_mqtt_p99_ms: quantile(steady.mqtt, 0.99),
      ingest_window_entries: steady.all.length,
      command_rate_per_s: COMMANDS_PER_S,
      commands_ok: commands.latencies.length,
      commands_not_ok: commands.failed,
      command_statuses: agentCmd,
      command_p50_ms: quantile(lat, 0.5),
      command_p99_ms: quantile(lat, 0.99),
      command_agent_p99_ms: quantile(Float64Array.from(commands.byKind.agent).sort(), 0.99),
      command_mqtt_p99_ms: quantile(Float64Array.from(commands.byKind.mqtt).sort(), 0.99),
      gateway_rss_mb: gatewayRss,
      redis_used_memory_mb: usedMemory,
      gateway_heap_used_mb: gm1?.heap_used_mb,
      gateway_heap_total_mb: gm1?.heap_total_mb,
      gateway_external_mb: gm1?.external_mb,
      gateway_gc_share: gm0 && gm1 ? ((gm1.gc_s - gm0.gc_s) * 1000) / windowMs : undefined,
      redis_top_commands: redisCommands,
      ...cpuShare,
      cpu_gateway_main_thread: gwMainShare,
      eld_gateway_p99_ms: gwEld?.p99,
      eld_gateway_max_ms: gwEld?.max,
      eld_sim_p99_ms: simEld?.p99,
      eld_sim_max_ms: simEld?.max,
      eld_bench_p99_ms: ownEld.percentile(99) / 1e6,
      // The goals of issue 13 for this run, each met or not.
      targets: {
        ingested_ge_0_99_offered: (stored1 - stored0) / (windowMs / 1000) >= 0.99 * summary.offeredPerSecond,
        lost_and_duplicates_0: a.lost === 0 && a.duplicates === 0,
        ingest_p99_lt_10_ms: a.ingestP99Ms < 10,
        command_p99_lt_20_ms: quantile(lat, 0.99) < 20,
        gateway_rss_lt_150_mb: gatewayRss < 150,
        cpu_gateway_le_0_45: (cpuShare.cpu_gateway ?? Number.NaN) <= 0.45,
      },
    };
  } finally {
    client.disconnect();
    await gw.kill('SIGKILL');
    await redis.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
