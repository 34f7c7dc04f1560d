/**
 * `npm run bench -- gateway`: one load generator (N MQTT.js publishers at
 * QoS 1, ~120-byte payloads, a window of publishes in flight each) against:
 *
 *   gateway_broker_per_s   the gateway in broker mode (PUBACK after the append)
 *   gateway_bridge_per_s   the gateway in bridge mode behind mosquitto (entries in Redis per second)
 *   mosquitto_per_s        mosquitto alone, publish -> one QoS 1 subscriber (the MQTT ceiling)
 *   nats_jetstream_per_s   nats-server's MQTT listener with JetStream, publish -> one QoS 1 subscriber
 *   sparkplug_per_s        the gateway in broker mode taking Sparkplug B: metrics/s acknowledged
 *                          (PUBACK after the append), PUBLISHERS edge nodes sending DDATA of
 *                          SPARKPLUG_METRICS metrics by alias; sparkplug_vs_json compares it with
 *                          gateway_broker_per_s (JSON messages/s, same run), and
 *                          sparkplug_acked_not_written counts metrics acknowledged and not in
 *                          Redis (must be 0)
 *   bridge_vs_mosquitto    bridge / mosquitto of the median of BENCH_GATEWAY_ROUNDS (3) interleaved
 *                          pairs (bridge leg, then mosquitto leg); every pair's ratio in
 *                          bridge_vs_mosquitto_rounds, and the two rates above are that pair's
 *   p50_ms, p99_ms         gateway broker mode at a fixed offered 10,000 msg/s: publish -> PUBACK,
 *                          which comes after the entry is readable in Redis (an upper bound of
 *                          publish -> readable)
 *
 * GATEWAY_BENCH_SET='key=value,...' adds options to the broker-mode gateway,
 * BRIDGE_BENCH_SET the same for the bridge-mode gateway,
 * BRIDGE_CONN sets the bridge's connections (default: the gateway's, bridge.connections), for experiments.
 *
 * Every server runs as its own process (the gateway through its CLI), each on
 * free ports in a temporary directory; the system nats-server and mosquitto
 * are never touched.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { systemClock } from '#shared/clock.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { deviceTopic } from '#shared/sparkplug/topic.js';
import { KindStats, SparkplugNode } from '../firmware-sim/fleet.js';
import { quantile } from '../firmware-sim/ledger.js';
import { gatewaySchema } from '../gateway/config.js';
import { startGatewayProcess } from '../test/harness/gateway.js';
import { startMosquitto } from '../test/harness/mosquitto.js';
import { freePort } from '../test/harness/ports.js';
import { spawnTracked, waitExit, waitForPort } from '../test/harness/process.js';
import { startLocalRedis } from '../test/harness/redis-server.js';
import { nextSeq, payload, saturate } from './_mqtt-load.js';

const PUBLISHERS = 20;
const WINDOW = 32;
const SECONDS = 5;
const WARMUP_MS = 1000;
const FIXED_RATE = 10_000;
const SPARKPLUG_METRICS = 10;

async function connectPublishers(url: string, prefix: string): Promise<MqttClient[]> {
  return Promise.all(
    Array.from({ length: PUBLISHERS }, (_, i) =>
      mqtt.connectAsync(url, { clientId: `${prefix}-${i}`, reconnectPeriod: 0, clean: true }),
    ),
  );
}

/** Bridge/mosquitto pairs measured (BENCH_GATEWAY_ROUNDS, default 3, odd so the median is one pair). */
const ROUNDS = Math.max(1, Number(process.env.BENCH_GATEWAY_ROUNDS ?? 3));

async function measureRate(
  clients: MqttClient[],
  prefix: string,
  count: () => Promise<number> | number,
): Promise<number> {
  await saturate(clients, prefix, WARMUP_MS, WINDOW);
  const before = await count();
  const started = performance.now();
  await saturate(clients, prefix, SECONDS * 1000, WINDOW);
  const after = await count();
  return (after - before) / ((performance.now() - started) / 1000);
}

async function closeAll(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.endAsync(true)));
}

/** A QoS 1 subscriber counting what it receives. */
async function counter(
  url: string,
  filter: string,
): Promise<{ count: () => number; close: () => Promise<void> }> {
  let n = 0;
  const sub = await mqtt.connectAsync(url, { clientId: `bench-sub-${Date.now()}`, reconnectPeriod: 0 });
  sub.on('message', () => n++);
  await sub.subscribeAsync(filter, { qos: 1 });
  return { count: () => n, close: () => sub.endAsync(true) };
}

/** Entries in every telemetry partition of a prefix: key names from the one key module, and the partition count the gateway processes here run with (their default). */
async function telemetryCount(redis: Redis, prefix: string): Promise<number> {
  const streams = new Keys(prefix, gatewaySchema['redis.partitions'].default).allTelemetryStreams();
  const lens = await Promise.all(streams.map((s) => redis.xlen(s)));
  return lens.reduce((a, b) => a + b, 0);
}

/**
 * Extra gateway options for experiments, `key=value,...` (e.g. projection.enabled=false):
 * GATEWAY_BENCH_SET for the broker-mode gateway, BRIDGE_BENCH_SET for the bridge.
 */
function extraOptions(variable = 'GATEWAY_BENCH_SET'): Record<string, string> {
  const pairs = (process.env[variable] ?? '').split(',').filter(Boolean);
  return Object.fromEntries(pairs.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

async function gatewayBroker(redisUrl: string): Promise<{ rate: number; p50: number; p99: number }> {
  const port = await freePort();
  const gw = startGatewayProcess({
    'gateway.id': 'bench-broker',
    'broker.port': port,
    'redis.url': redisUrl,
    'redis.keyPrefix': 'benchb',
    'producer.idempotent': true,
    'commands.enabled': false,
    'log.level': 'warn',
    ...extraOptions(),
  });
  try {
    await waitForPort(port);
    const url = `mqtt://127.0.0.1:${port}`;
    const clients = await connectPublishers(url, 'gb');
    await saturate(clients, 'gb', WARMUP_MS, WINDOW);
    const started = performance.now();
    const acked = await saturate(clients, 'gb', SECONDS * 1000, WINDOW);
    const measured = acked / ((performance.now() - started) / 1000);
    const latencies = await fixedRate(clients, 'gb');
    await closeAll(clients);
    latencies.sort((a, b) => a - b);
    return { rate: measured, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) };
  } finally {
    await gw.kill('SIGKILL');
  }
}

/**
 * Broker mode with Sparkplug B edge nodes (firmware-sim's, protobuf payloads):
 * each births, then keeps WINDOW DDATAs of SPARKPLUG_METRICS metrics in flight.
 * MQTT.js sends a node's publishes in order and the gateway reads them in
 * order, so seq never gaps (rebirths would show one).
 */
async function gatewaySparkplug(
  redisUrl: string,
): Promise<{ metricsPerS: number; ackedNotWritten: number; rebirths: number }> {
  const port = await freePort();
  const prefix = 'benchs';
  const gw = startGatewayProcess({
    'gateway.id': 'bench-sparkplug',
    'broker.port': port,
    'redis.url': redisUrl,
    'redis.keyPrefix': prefix,
    'producer.idempotent': true,
    'commands.enabled': false,
    'log.level': 'warn',
    ...extraOptions(),
  });
  const redis = new Redis(redisUrl);
  const stats = new KindStats();
  const nodes = Array.from(
    { length: PUBLISHERS },
    (_, i) =>
      new SparkplugNode(
        {
          group: 'bench',
          node: `n${i}`,
          devices: ['d0'],
          url: `mqtt://127.0.0.1:${port}`,
          metricsPerDevice: SPARKPLUG_METRICS,
          periodMs: 0,
        },
        stats,
        systemClock,
        silentLogger(),
      ),
  );
  try {
    await waitForPort(port);
    await Promise.all(nodes.map((n) => n.start()));
    // Births: 3 node metrics (bdSeq, Rebirth, Uptime) and the device's metrics.
    let ackedMetrics = nodes.length * (3 + SPARKPLUG_METRICS);
    const pumpFor = async (ms: number) => {
      let acked = 0;
      let running = true;
      const pump = (n: SparkplugNode) => {
        if (!running) return;
        const topic = deviceTopic('bench', 'DDATA', n.options.node, 'd0');
        n.raw(topic, n.dataPayload('d0')).then(
          () => {
            acked++;
            pump(n);
          },
          () => pump(n),
        );
      };
      for (const n of nodes) for (let w = 0; w < WINDOW; w++) pump(n);
      await new Promise((r) => setTimeout(r, ms));
      running = false;
      // Let what is in flight be acknowledged, so the count below is complete.
      await waitForQuiet(() => stats.acked + stats.errors, stats.sent);
      return acked;
    };
    ackedMetrics += (await pumpFor(WARMUP_MS)) * SPARKPLUG_METRICS;
    const started = performance.now();
    const acked = await pumpFor(SECONDS * 1000);
    const seconds = (performance.now() - started) / 1000;
    ackedMetrics += acked * SPARKPLUG_METRICS;
    const written = await telemetryCount(redis, prefix);
    return {
      metricsPerS: (acked * SPARKPLUG_METRICS) / seconds,
      ackedNotWritten: Math.max(0, ackedMetrics - written),
      rebirths: nodes.reduce((a, n) => a + n.rebirths, 0),
    };
  } finally {
    await Promise.all(nodes.map((n) => n.kill().catch(() => {})));
    redis.disconnect();
    await gw.kill('SIGKILL');
  }
}

/** Waits (at most 10 s) until `done()` reaches `total`. */
async function waitForQuiet(done: () => number, total: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (done() < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

/** Offers FIXED_RATE msg/s spread over the publishers for SECONDS; returns publish -> PUBACK latencies in ms. */
async function fixedRate(clients: MqttClient[], prefix: string): Promise<number[]> {
  const latencies: number[] = [];
  const tickMs = 5;
  const perTick = (FIXED_RATE * tickMs) / 1000;
  let sent = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - started;
      const due = Math.floor((elapsed / 1000) * FIXED_RATE);
      // Catch up to the schedule (timers are coarse), at most a few ticks' worth.
      const n = Math.min(due - sent, perTick * 4);
      for (let k = 0; k < n; k++) {
        const i = sent % clients.length;
        const t0 = performance.now();
        const record = elapsed > WARMUP_MS;
        clients[i]!.publish(
          `devices/${prefix}-${i}/telemetry/load`,
          payload(nextSeq(`${prefix}-${i}`)),
          { qos: 1 },
          () => {
            if (record) latencies.push(performance.now() - t0);
          },
        );
        sent++;
      }
      if (elapsed >= SECONDS * 1000 + WARMUP_MS) {
        clearInterval(timer);
        resolve();
      }
    }, tickMs);
  });
  await new Promise((r) => setTimeout(r, 500));
  return latencies;
}

async function gatewayBridge(redisUrl: string): Promise<number> {
  const mosq = await startMosquitto(['max_inflight_messages 1000']);
  const redis = new Redis(redisUrl);
  // Each round starts from an empty Redis, as the first did: no streams or state from the round before.
  await redis.flushall();
  const gw = startGatewayProcess({
    'gateway.mode': 'bridge',
    'gateway.id': 'bench-bridge',
    'bridge.url': mosq.url,
    // The defaults (bridge.connections, bridge.inflight) unless an experiment sets them.
    ...(process.env.BRIDGE_CONN ? { 'bridge.connections': Number(process.env.BRIDGE_CONN) } : {}),
    'redis.url': redisUrl,
    'redis.keyPrefix': 'benchr',
    'commands.enabled': false,
    'log.level': 'info',
    ...extraOptions('BRIDGE_BENCH_SET'),
  });
  try {
    await gw.waitForLog((l) => l.msg === 'gateway started', 30_000);
    const clients = await connectPublishers(mosq.url, 'gr');
    const rate = await measureRate(clients, 'gr', () => telemetryCount(redis, 'benchr'));
    await closeAll(clients);
    return rate;
  } finally {
    await gw.kill('SIGKILL');
    redis.disconnect();
    await mosq.stop();
  }
}

async function mosquittoAlone(): Promise<number> {
  const mosq = await startMosquitto();
  try {
    const sub = await counter(mosq.url, 'devices/+/telemetry/#');
    const clients = await connectPublishers(mosq.url, 'ma');
    const rate = await measureRate(clients, 'ma', sub.count);
    await closeAll(clients);
    await sub.close();
    return rate;
  } finally {
    await mosq.stop();
  }
}

async function natsJetStream(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-nats-'));
  const [port, mqttPort] = [await freePort(), await freePort()];
  const conf = join(dir, 'nats.conf');
  writeFileSync(
    conf,
    [
      `listen: 127.0.0.1:${port}`,
      'server_name: bench_nats',
      `jetstream { store_dir: "${dir}/js" }`,
      `mqtt { listen: 127.0.0.1:${mqttPort} }`,
      '',
    ].join('\n'),
  );
  const child = spawnTracked('nats-server', ['-c', conf]);
  try {
    await waitForPort(mqttPort);
    const url = `mqtt://127.0.0.1:${mqttPort}`;
    const sub = await counter(url, 'devices/+/telemetry/#');
    const clients = await connectPublishers(url, 'nj');
    const rate = await measureRate(clients, 'nj', sub.count);
    await closeAll(clients);
    await sub.close();
    return rate;
  } finally {
    child.kill('SIGKILL');
    await waitExit(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const redis = await startLocalRedis();
  try {
    const broker = await gatewayBroker(redis.url);
    const sparkplug = await gatewaySparkplug(redis.url);
    // The ratio of two legs run one after the other moves with whatever else the machine does
    // (0.67-0.82 over runs of one build): ROUNDS interleaved pairs, the median pair's ratio.
    const rounds: Array<{ bridge: number; mosquitto: number }> = [];
    for (let i = 0; i < ROUNDS; i++) {
      const bridge = await gatewayBridge(redis.url);
      rounds.push({ bridge, mosquitto: await mosquittoAlone() });
    }
    const ratios = rounds.map((r) => r.bridge / r.mosquitto);
    const median = quantile(
      [...ratios].sort((a, b) => a - b),
      0.5,
    );
    const { bridge, mosquitto } = rounds[ratios.indexOf(median)]!;
    const nats = await natsJetStream();
    return {
      gateway_broker_per_s: Math.round(broker.rate),
      sparkplug_per_s: Math.round(sparkplug.metricsPerS),
      sparkplug_vs_json: sparkplug.metricsPerS / broker.rate,
      sparkplug_acked_not_written: sparkplug.ackedNotWritten,
      sparkplug_rebirths: sparkplug.rebirths,
      sparkplug_metrics_per_message: SPARKPLUG_METRICS,
      gateway_bridge_per_s: Math.round(bridge),
      mosquitto_per_s: Math.round(mosquitto),
      nats_jetstream_per_s: Math.round(nats),
      p50_ms: broker.p50,
      p99_ms: broker.p99,
      broker_vs_mosquitto: broker.rate / mosquitto,
      broker_vs_nats: broker.rate / nats,
      bridge_vs_mosquitto: bridge / mosquitto,
      bridge_vs_mosquitto_rounds: ratios.map((r) => Number(r.toFixed(3))),
      publishers: PUBLISHERS,
      window_per_publisher: WINDOW,
      seconds_per_run: SECONDS,
      offered_rate_for_latency: FIXED_RATE,
    };
  } finally {
    await redis.destroy();
  }
}
