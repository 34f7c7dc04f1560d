/**
 * A tool, not a listed benchmark (the leading underscore keeps it out of
 * `npm run bench`): drives the gateway in broker mode (its own process, the
 * CLI with its default services) with N MQTT publishers at QoS 1 and reports
 * what the benchmark cannot: the gateway's and Redis's CPU time per
 * acknowledged message (from /proc/<pid>/stat, less noisy on a shared machine
 * than wall time), and publish -> PUBACK latencies at a fixed offered rate.
 *
 *   npx tsx bench/_gateway-profile.ts [--cpu-prof DIR] [--seconds 5] [--rate 10000]
 *                                      [--publishers 20] [--window 32] [--set key=value ...]
 *                                      [--eld] [--root DIR] [--mosquitto]
 *
 * With --cpu-prof the gateway runs under `node --cpu-prof` and writes a
 * .cpuprofile into DIR when it exits (open it in Chrome DevTools, or sum
 * self time by function with `--summary`).
 */
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { flagName } from '#shared/config/schema.js';
import { startMosquitto } from '../test/harness/mosquitto.js';
import { freePort } from '../test/harness/ports.js';
import { spawnTracked, waitExit, waitForPort } from '../test/harness/process.js';
import { startLocalRedis } from '../test/harness/redis-server.js';
import { nextSeq, payload, saturate } from './_mqtt-load.js';

const { values } = parseArgs({
  options: {
    'cpu-prof': { type: 'string' },
    seconds: { type: 'string', default: '5' },
    rate: { type: 'string', default: '10000' },
    publishers: { type: 'string', default: '20' },
    window: { type: 'string', default: '32' },
    set: { type: 'string', multiple: true, default: [] },
    'skip-saturate': { type: 'boolean', default: false },
    'skip-fixed': { type: 'boolean', default: false },
    eld: { type: 'boolean', default: false },
    mosquitto: { type: 'boolean', default: false },
    root: { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const RATE = Number(values.rate);
const PUBLISHERS = Number(values.publishers);
const WINDOW = Number(values.window);

/** utime + stime of a process, in ms (clock ticks are 10 ms on Linux). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function fixedRate(clients: MqttClient[], ms: number): Promise<{ latencies: number[]; sent: number }> {
  const latencies: number[] = [];
  let sent = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - started;
      const due = Math.floor((elapsed / 1000) * RATE);
      const n = Math.min(due - sent, (RATE * 20) / 1000);
      for (let k = 0; k < n; k++) {
        const i = sent % clients.length;
        const t0 = performance.now();
        clients[i]!.publish(
          `devices/prof-${i}/telemetry/load`,
          payload(nextSeq(`prof-${i}`)),
          { qos: 1 },
          () => latencies.push(performance.now() - t0),
        );
        sent++;
      }
      if (elapsed >= ms) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await new Promise((r) => setTimeout(r, 500));
  return { latencies, sent };
}

const q = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;

/** The floor of this load generator on this machine: the same phases against mosquitto (PUBACK at once). */
async function mosquittoFloor(): Promise<void> {
  const mosq = await startMosquitto();
  try {
    const clients = await Promise.all(
      Array.from({ length: PUBLISHERS }, (_, i) =>
        mqtt.connectAsync(mosq.url, { clientId: `prof-${i}`, reconnectPeriod: 0 }),
      ),
    );
    await saturate(clients, 'prof', 1000, WINDOW);
    const { latencies } = await fixedRate(clients, SECONDS * 1000);
    latencies.sort((a, b) => a - b);
    process.stdout.write(
      `mosquitto fixed ${RATE}/s: p50 ${q(latencies, 0.5).toFixed(2)} ms, p90 ${q(latencies, 0.9).toFixed(2)} ms, p99 ${q(latencies, 0.99).toFixed(2)} ms\n`,
    );
    await Promise.all(clients.map((c) => c.endAsync(true)));
  } finally {
    await mosq.stop();
  }
}

async function main(): Promise<void> {
  if (values.mosquitto) return mosquittoFloor();
  const redis = await startLocalRedis();
  const admin = new Redis(redis.url);
  const redisPid = Number(/process_id:(\d+)/.exec(await admin.info('server'))?.[1]);
  const port = await freePort();
  const overrides: Record<string, string | number | boolean> = {
    'gateway.id': 'prof',
    'broker.port': port,
    'redis.url': redis.url,
    'redis.keyPrefix': 'prof',
    'log.level': 'warn',
  };
  for (const kv of values.set ?? []) {
    const at = kv.indexOf('=');
    overrides[kv.slice(0, at)] = kv.slice(at + 1);
  }
  const args = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`] : [];
  // --eld: the gateway reports its event-loop delay of the fixed-rate phase when it exits.
  if (values.eld) args.push('--import', new URL('./_eld-preload.mjs', import.meta.url).href);
  // GW_NODE_ARGS='--trace-gc --max-semi-space-size=64': extra node flags for the gateway.
  if (process.env.GW_NODE_ARGS) args.unshift(...process.env.GW_NODE_ARGS.split(' ').filter(Boolean));
  // As `npm run gateway` starts it: bundled at start (scripts/launch.mjs), not under tsx.
  args.push('scripts/launch.mjs', 'gateway');
  for (const [key, value] of Object.entries(overrides)) args.push(`--${flagName(key)}`, String(value));
  // --root DIR: the gateway of another checkout (e.g. `git archive <rev>`), to compare revisions in one session.
  const gw = spawnTracked(process.execPath, args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    cwd: values.root,
  });
  const pid = gw.pid!;
  try {
    await waitForPort(port);
    const clients = await Promise.all(
      Array.from({ length: PUBLISHERS }, (_, i) =>
        mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: `prof-${i}`, reconnectPeriod: 0 }),
      ),
    );
    const out: Record<string, number> = {};
    await saturate(clients, 'prof', 1000, WINDOW);
    if (!values['skip-saturate']) {
      const [g0, r0, t0] = [cpuMs(pid), cpuMs(redisPid), performance.now()];
      const acked = await saturate(clients, 'prof', SECONDS * 1000, WINDOW);
      const [g1, r1, t1] = [cpuMs(pid), cpuMs(redisPid), performance.now()];
      out.saturated_per_s = Math.round(acked / ((t1 - t0) / 1000));
      out.saturated_gateway_cpu_us_per_msg = ((g1 - g0) * 1000) / acked;
      out.saturated_redis_cpu_us_per_msg = ((r1 - r0) * 1000) / acked;
      out.saturated_gateway_cpu_share = (g1 - g0) / (t1 - t0);
    }
    if (!values['skip-fixed']) {
      const [g0, r0] = [cpuMs(pid), cpuMs(redisPid)];
      // The preload's window mark: without --eld nothing handles SIGUSR2, and it would end the gateway.
      if (values.eld) gw.kill('SIGUSR2');
      const own = monitorEventLoopDelay({ resolution: 1 });
      own.enable();
      const { latencies, sent } = await fixedRate(clients, SECONDS * 1000);
      own.disable();
      out.fixed_loadgen_eld_p99_ms = own.percentile(99) / 1e6;
      out.fixed_loadgen_eld_max_ms = own.max / 1e6;
      const [g1, r1] = [cpuMs(pid), cpuMs(redisPid)];
      latencies.sort((a, b) => a - b);
      out.fixed_offered_per_s = RATE;
      out.fixed_acked = latencies.length;
      out.fixed_sent = sent;
      out.fixed_p50_ms = q(latencies, 0.5);
      out.fixed_p90_ms = q(latencies, 0.9);
      out.fixed_p99_ms = q(latencies, 0.99);
      out.fixed_max_ms = latencies.at(-1) ?? Number.NaN;
      out.fixed_gateway_cpu_us_per_msg = ((g1 - g0) * 1000) / latencies.length;
      out.fixed_redis_cpu_us_per_msg = ((r1 - r0) * 1000) / latencies.length;
    }
    await Promise.all(clients.map((c) => c.endAsync(true)));
    for (const [k, v] of Object.entries(out))
      process.stdout.write(`${k.padEnd(36)} ${Number(v.toFixed(3))}\n`);
  } finally {
    gw.kill('SIGTERM');
    await waitExit(gw, 15_000);
    admin.disconnect();
    await redis.destroy();
  }
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
