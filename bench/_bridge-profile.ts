/**
 * The bridge leg of `npm run bench -- gateway` with a CPU profile of the gateway
 * (bench/_eld-preload.mjs): `BENCH_CPU_PROF_DIR=DIR npx tsx bench/_bridge-profile.ts [seconds]`.
 * Prints entries/s in Redis and writes DIR/<pid>-1.cpuprofile over the measured window.
 */
import mqtt from 'mqtt';
import { Redis } from 'ioredis';
import { Keys } from '#shared/keys.js';
import { runScript } from '../test/harness/agent-process.js';
import { flagName } from '#shared/config/schema.js';
import { startMosquitto } from '../test/harness/mosquitto.js';
import { startLocalRedis } from '../test/harness/redis-server.js';
import { saturate } from './_mqtt-load.js';

const seconds = Number(process.argv[2] ?? 6);
const redis = await startLocalRedis();
const mosq = await startMosquitto(['max_inflight_messages 1000']);
const client = new Redis(redis.url);
const opts: Record<string, string | number | boolean> = {
  'gateway.mode': 'bridge',
  'gateway.id': 'prof-bridge',
  'bridge.url': mosq.url,
  'redis.url': redis.url,
  'redis.keyPrefix': 'benchr',
  'commands.enabled': false,
  'log.level': 'info',
  // BRIDGE_SET='key=value,...': options for experiments (bridge.inflight=64, ...).
  ...Object.fromEntries(
    (process.env.BRIDGE_SET ?? '')
      .split(',')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  ),
};
const args = Object.entries(opts).flatMap(([k, v]) => [`--${flagName(k)}`, String(v)]);
const preload = `--import=${new URL('./_eld-preload.mjs', import.meta.url).href}`;
const gw = runScript('gateway/cli.ts', args, { NODE_OPTIONS: preload });
const count = async () => {
  const lens = await Promise.all(new Keys('benchr', 16).allTelemetryStreams().map((s) => client.xlen(s)));
  return lens.reduce((a, b) => a + b, 0);
};
try {
  await gw.waitForLog((l) => l.msg === 'gateway started', 30_000);
  const pubs = await Promise.all(
    Array.from({ length: 20 }, (_, i) => mqtt.connectAsync(mosq.url, { clientId: `gp-${i}`, reconnectPeriod: 0, clean: true })),
  );
  await saturate(pubs, 'gp', 1000, 32);
  gw.child.kill('SIGUSR2');
  const before = await count();
  const t0 = performance.now();
  await saturate(pubs, 'gp', seconds * 1000, 32);
  const after = await count();
  gw.child.kill('SIGUSR2');
  process.stdout.write(`bridge: ${Math.round((after - before) / ((performance.now() - t0) / 1000))} entries/s\n`);
  await new Promise((r) => setTimeout(r, 1500));
  await Promise.all(pubs.map((p) => p.endAsync(true)));
} finally {
  await gw.kill('SIGKILL');
  client.disconnect();
  await mosq.stop();
  await redis.destroy();
}
