/**
 * Micro-benchmark of the fleet simulator's hot path: startFleet (drone
 * profile) in this process against a local redis-server (agent devices, the
 * real producer) and a mosquitto (MQTT devices, one MQTT.js client each), both
 * their own processes, so process.cpuUsage() is the simulator's alone. After
 * every device is up and a warm-up, it measures rounds of a fixed count of
 * sent messages and prints the simulator's CPU µs per message (user + system,
 * every thread: GC included), the median of the rounds, and the wall rate.
 * `npx tsx bench/_sim-micro.ts [agents=1000] [mqtt=1000] [messages per round=150000] [rounds=3]`
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startFleet } from '../firmware-sim/fleet.js';
import { quantile } from '../firmware-sim/ledger.js';
import { startMosquitto } from '../test/harness/mosquitto.js';
import { startLocalRedis } from '../test/harness/redis-server.js';

const arg = (i: number, fallback: number) => {
  const v = Number(process.argv[2 + i]);
  return Number.isFinite(v) && v >= 0 ? v : fallback;
};
const AGENTS = arg(0, 1000);
const MQTT = arg(1, 1000);
const PER_ROUND = arg(2, 150_000);
const ROUNDS = arg(3, 3);
const WARMUP_MS = 4000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const redis = await startLocalRedis();
const broker = await startMosquitto();
const fleet = await startFleet({
  'redis.url': redis.url,
  'redis.keyPrefix': 'simmicro',
  'mqtt.url': broker.url,
  'fleet.agents': AGENTS,
  'fleet.mqtt': MQTT,
  'fleet.profile': 'drone',
  'fleet.commandAgents': 0,
  'fleet.rampUp': 2000,
  'fleet.idPrefix': 'sm',
});
try {
  const total = AGENTS + MQTT;
  while (fleet.stats().connected < total) await sleep(100);
  await sleep(WARMUP_MS);
  const rounds: Array<{ usPerMsg: number; perS: number; skipped: number; eldP99: number }> = [];
  for (let r = 0; r < ROUNDS; r++) {
    const s0 = fleet.stats();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const eld = monitorEventLoopDelay({ resolution: 1 });
    eld.enable();
    let s1 = s0;
    while (s1.sent - s0.sent < PER_ROUND) {
      await sleep(50);
      s1 = fleet.stats();
    }
    eld.disable();
    const cpu = process.cpuUsage(cpu0);
    const ms = performance.now() - t0;
    const sent = s1.sent - s0.sent;
    rounds.push({
      usPerMsg: (cpu.user + cpu.system) / sent,
      perS: (sent * 1000) / ms,
      skipped: s1.skippedSamples - s0.skippedSamples,
      eldP99: eld.percentile(99) / 1e6,
    });
  }
  const s = fleet.stats();
  const median = quantile(
    rounds.map((r) => r.usPerMsg).sort((a, b) => a - b),
    0.5,
  );
  process.stdout.write(
    `${JSON.stringify({
      agents: AGENTS,
      mqtt: MQTT,
      offered_per_s: Math.round(s.offeredPerSecond),
      rounds: rounds.map((r) => ({
        us_per_msg: Number(r.usPerMsg.toFixed(2)),
        sent_per_s: Math.round(r.perS),
        skipped: r.skipped,
        eld_p99_ms: Number(r.eldP99.toFixed(1)),
      })),
      median_us_per_msg: Number(median.toFixed(2)),
      errors: s.errors,
      dropped: s.dropped,
      node: process.version,
    })}\n`,
  );
} finally {
  await fleet.stop();
  await broker.stop();
  await redis.destroy();
}
process.exit(0);
