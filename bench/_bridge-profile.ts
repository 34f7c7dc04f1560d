/**
 * The bridge leg of `npm run bench -- gateway` with a CPU profile of the gateway
 * (bench/_eld-preload.mjs): `BENCH_CPU_PROF_DIR=DIR npx tsx bench/_bridge-profile.ts [seconds]`.
 * Prints entries/s in Redis and writes DIR/<pid>-1.cpuprofile over the measured window.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { flagName } from '#shared/config/schema.js';
import { Keys } from '#shared/keys.js';
import { runProgram } from '../test/harness/agent-process.js';
import { startMosquitto } from '../test/harness/mosquitto.js';
import { startLocalRedis } from '../test/harness/redis-server.js';
import { saturate } from './_mqtt-load.js';
import { redisCpuSeconds } from './_redis-info.js';

const seconds = Number(process.argv[2] ?? 6);
/** utime + stime of a process or one of its threads, in ms. */
function cpuMs(pid: number | undefined, tid?: number): number {
  const stat = readFileSync(tid ? `/proc/${pid}/task/${tid}/stat` : `/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}
function mosquittoPid(port: number): number | undefined {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      // Ours: mosquitto -c <its conf>, whose listener is this port.
      const [name, flag, conf] = cmd.split('\0');
      if (
        name === 'mosquitto' &&
        flag === '-c' &&
        conf &&
        readFileSync(conf, 'utf8').includes(`listener ${port} `)
      )
        return Number(pid);
    } catch {
      // A process that ended meanwhile, or not ours to read.
    }
  }
  return undefined;
}
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
const gw = runProgram('gateway', args, { NODE_OPTIONS: preload });
const count = async () => {
  const lens = await Promise.all(new Keys('benchr', 16).allTelemetryStreams().map((s) => client.xlen(s)));
  return lens.reduce((a, b) => a + b, 0);
};
try {
  await gw.waitForLog((l) => l.msg === 'gateway started', 30_000);
  const pubs = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      mqtt.connectAsync(mosq.url, { clientId: `gp-${i}`, reconnectPeriod: 0, clean: true }),
    ),
  );
  await saturate(pubs, 'gp', 1000, 32);
  gw.child.kill('SIGUSR2');
  const redisPid = Number(/process_id:(\d+)/.exec(await client.info('server'))?.[1]);
  const pids = {
    gateway: gw.child.pid,
    mosquitto: mosquittoPid(mosq.port),
    redis: redisPid,
    loadgen: process.pid,
  };
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuMs(p)]));
  const gwMain0 = cpuMs(gw.child.pid, gw.child.pid);
  const before = await count();
  const t0 = performance.now();
  await saturate(pubs, 'gp', seconds * 1000, 32);
  const after = await count();
  gw.child.kill('SIGUSR2');
  const secs = (performance.now() - t0) / 1000;
  const shares = Object.entries(pids).map(
    ([k, p]) => `${k} ${((cpuMs(p) - cpu0[k]!) / 1000 / secs).toFixed(2)}`,
  );
  shares.push(
    `gateway main thread ${((cpuMs(gw.child.pid, gw.child.pid) - gwMain0) / 1000 / secs).toFixed(2)}`,
  );
  process.stdout.write(`cpu (cores): ${shares.join(', ')}\n`);
  const stats = [...(await client.info('commandstats')).matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g)]
    .sort((a, b) => Number(b[3]) - Number(a[3]))
    .slice(0, 6)
    .map(
      ([, name, calls, usec]) => `${name} ${calls} calls, ${(Number(usec) / Number(calls)).toFixed(1)} us`,
    );
  const cpu = (await redisCpuSeconds(client)).toFixed(2);
  process.stdout.write(
    `bridge: ${Math.round((after - before) / secs)} entries/s; redis cpu ${cpu} s in all; ${stats.join('; ')}\n`,
  );
  await new Promise((r) => setTimeout(r, 1500));
  await Promise.all(pubs.map((p) => p.endAsync(true)));
} finally {
  await gw.kill('SIGKILL');
  client.disconnect();
  await mosq.stop();
  await redis.destroy();
}
