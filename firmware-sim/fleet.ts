/**
 * The simulator as a library: `startFleet(options)` runs a mixed fleet of
 * agent devices and MQTT-only firmware in this process and returns a handle
 * with live stats, the device list, fault triggers, an audit that reads the
 * streams back, and `stop()`, which leaves nothing running.
 *
 *   const fleet = await startFleet({ 'redis.url': url, 'mqtt.url': broker, 'fleet.agents': 50, 'fleet.mqtt': 50 });
 *   fleet.stats();            // { connected, sent, acked, errors, dropped, byKind: { agent, mqtt }, ... }
 *   await fleet.stop();
 *   await fleet.audit();      // { acked, stored, lost, duplicates, ... }
 *
 * Options are the keys of firmware-sim/config.ts (defaults there, once).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Clock, systemClock } from '#shared/clock.js';
import { loadConfig } from '#shared/config/load.js';
import { ConfigError } from '#shared/errors.js';
import { fnv1a32, Keys } from '#shared/keys.js';
import { type Logger, silentLogger } from '#shared/log.js';
import { createRegistry, Gauge, type MetricsServer, type Registry, serveMetrics } from '#shared/metrics.js';
import { createRedis, describeTarget, waitReady } from '#shared/redis/connect.js';
import { seededRandom } from '../device/index.js';
import { type AgentDevice, AgentPool } from './agents.js';
import { ENV_PREFIX, type SimConfig, simSchema } from './config.js';
import { type DeviceInfo, type DeviceKind, KindStats } from './device.js';
import { type FaultCounts, Faults } from './faults.js';
import { type AuditReport, SeqLedger } from './ledger.js';
import { MqttDevice } from './mqtt-device.js';
import { createModel, ratePerDevice } from './profiles.js';
import { type SparkplugNode, sparkplugNodes } from './sparkplug-node.js';
import { type TasmotaDevice, tasmotaDevices } from './tasmota-device.js';

export type { DeviceInfo, DeviceKind } from './device.js';
export { KindStats } from './device.js';
export type { AuditReport } from './ledger.js';
export { SparkplugNode, type SparkplugNodeOptions } from './sparkplug-node.js';

export type FleetOptions = Partial<SimConfig>;

export interface FleetDeps {
  logger?: Logger;
  clock?: Clock;
  /** Metrics go here (sim_* and the agents' producer telemetry_*); a new registry when absent. */
  registry?: Registry;
}

export type KindCounts = ReturnType<KindStats['snapshot']>;

export interface FleetStats {
  /** Devices connected now: MQTT devices with a live session, agents while the shared Redis connection is up. */
  connected: number;
  /** Telemetry publishes (duplicates included) handed to Redis or the broker. */
  sent: number;
  /** Of those, acknowledged (in Redis: the producer's reply, or the gateway's PUBACK). */
  acked: number;
  errors: number;
  dropped: number;
  byKind: Record<DeviceKind, KindCounts>;
  /** Agent entries Redis refused as already appended (the MQTT side's are counted by the gateway). */
  duplicatesRefused: number;
  faults: FaultCounts;
  /** Messages per second the profile offers, for the whole fleet (without faults). */
  offeredPerSecond: number;
  /** Samples skipped because this process fell behind its schedule (an overloaded simulator). */
  skippedSamples: number;
}

export interface Fleet {
  readonly config: SimConfig;
  readonly keys: Keys;
  readonly devices: readonly DeviceInfo[];
  /** Device ids (as the tasmota mapping names them) of the Tasmota-style devices (fleet.tasmota); they take no commands. */
  readonly tasmota: readonly string[];
  /** Their counts: connected, sent, acknowledged, errors. */
  tasmotaStats(): KindCounts;
  /** Node ids (`<group>:<node>`) of the Sparkplug B edge nodes (fleet.sparkplug); their devices are `<node id>:d0`, `:d1`. */
  readonly sparkplug: readonly string[];
  sparkplugStats(): KindCounts;
  stats(): FleetStats;
  /** Disconnect storm now: `share` of the MQTT devices (default faults.stormFraction), and the agents' Redis connection. */
  storm(share?: number): string[];
  /** Crashes one device now; it reboots after `downtimeMs` (default faults.crashDowntime). */
  crash(deviceId: string, downtimeMs?: number): Promise<void>;
  /** Reads the streams back (works after stop): lost and duplicate entries by (device, seq). */
  audit(): Promise<AuditReport>;
  /** Stops every device, flushes (bounded by agent.shutdownTimeout-like 5 s), closes every connection and timer. */
  stop(): Promise<void>;
}

const STOP_TIMEOUT_MS = 5000;

export function fleetConfig(options: FleetOptions = {}): SimConfig {
  return loadConfig(simSchema, ENV_PREFIX, { overrides: options as Record<string, unknown> });
}

export async function startFleet(
  options: FleetOptions | SimConfig = {},
  deps: FleetDeps = {},
): Promise<Fleet> {
  const config = fleetConfig(options);
  const logger = deps.logger ?? silentLogger();
  const clock = deps.clock ?? systemClock;
  const registry = deps.registry ?? createRegistry({ program: 'firmware-sim' });
  const keys = new Keys(config['redis.keyPrefix'], config['redis.partitions']);
  const ledger = new SeqLedger();
  const faults = new Faults(config);
  const ownDataDir = config['fleet.dataDir'] === undefined;
  const dataDir = config['fleet.dataDir'] ?? mkdtempSync(join(tmpdir(), 'firmware-sim-'));
  const start = clock.now();
  const seqBase = config['fleet.seqBase'] || Math.floor(start / 1000) * 1000;
  const prefix = config['fleet.idPrefix'];
  const nAgents = config['fleet.agents'];
  const nMqtt = config['fleet.mqtt'];
  const nTasmota = config['fleet.tasmota'];
  const nSparkplug = config['fleet.sparkplug'];
  if (nAgents + nMqtt + nTasmota + nSparkplug === 0)
    throw new ConfigError(
      'fleet.agents',
      'config',
      'fleet.mqtt, fleet.tasmota and fleet.sparkplug are all 0: no devices',
    );
  const total = nAgents + nMqtt;
  const rampUp = config['fleet.rampUp'];

  const pool = new AgentPool(config, { keys, ledger, faults, logger, registry, clock, dataDir });
  const mqttStats = new KindStats();
  const mqttDevices: MqttDevice[] = [];
  const all: Array<AgentDevice | MqttDevice> = [];
  const timers = new Set<NodeJS.Timeout>();
  let stopping = false;

  // Start times interleave the kinds (agents even slots, MQTT odd), so a ramp-up brings both up together.
  // What every simulated device gets, agent or MQTT: its seeded randomness, clock offset,
  // ledger handle and first due time (agents on even ramp-up slots, MQTT devices on odd ones).
  const identity = (kind: 'agent' | 'mqtt', i: number) => {
    const id = `${prefix}-${kind === 'agent' ? 'a' : 'm'}-${i}`;
    const random = seededRandom(fnv1a32(id) ^ config['faults.seed']);
    const offset = faults.clockOffset(all.length);
    const seqs = ledger.register(id, seqBase, offset !== 0, kind);
    const ramp = kind === 'agent' ? i * 2 : i * 2 + 1;
    const firstDue = start + (total > 1 ? Math.floor((ramp / total) * rampUp) : 0);
    const model = createModel(config['fleet.profile'], random, config, start);
    return { id, random, offset, seqs, firstDue, model };
  };
  for (let i = 0; i < nAgents; i++) {
    const { id, random, offset, seqs, firstDue, model } = identity('agent', i);
    all.push(pool.add(id, model, offset, firstDue, random, seqs));
  }
  for (let i = 0; i < nMqtt; i++) {
    const { id, random, offset, seqs, firstDue, model } = identity('mqtt', i);
    const d = new MqttDevice(id, model, offset, firstDue, random, seqs, {
      config,
      faults,
      stats: mqttStats,
      logger,
      clock,
    });
    mqttDevices.push(d);
    all.push(d);
  }

  // Vendor devices beside the fleet: outside the ledger (the gateway numbers their readings).
  const tasmotaStats = new KindStats();
  const tasmota: TasmotaDevice[] = tasmotaDevices(
    nTasmota,
    prefix,
    config['mqtt.url'].split(',')[0]!.trim(),
    config['profile.tasmota.telePeriod'],
    seededRandom(fnv1a32(`${prefix}-t`) ^ config['faults.seed']),
    tasmotaStats,
    clock,
    logger,
  );

  const sparkplugStats = new KindStats();
  const sparkplug: SparkplugNode[] = sparkplugNodes(
    nSparkplug,
    prefix,
    config['mqtt.url'].split(',')[0]!.trim(),
    config['profile.sparkplug.period'],
    seededRandom(fnv1a32(`${prefix}-s`) ^ config['faults.seed']),
    sparkplugStats,
    clock,
    logger,
  );

  const later = (fn: () => void, ms: number) => {
    const t = clock.setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  // Agents: Redis first (bounded wait; the producer retries after that), then the command workers.
  try {
    await waitReady(pool.client, describeTarget(config), config['redis.connectTimeout']);
  } catch (err) {
    pool.client.disconnect();
    throw err;
  }
  const commandAgents = Math.min(config['fleet.commandAgents'], pool.devices.length);
  await Promise.all(pool.devices.slice(0, commandAgents).map((d) => pool.startWorker(d)));
  for (const d of pool.devices) d.running = true;
  // MQTT devices connect spread over the ramp-up.
  mqttDevices.forEach((d, i) => {
    const at = total > 1 ? Math.floor(((i * 2 + 1) / total) * rampUp) : 0;
    if (at === 0) d.start();
    else later(() => !stopping && d.start(), at);
  });

  for (const d of tasmota) d.start();
  for (const n of sparkplug)
    n.start().catch((err: Error) =>
      logger.warn({ node: n.nodeId, error: err.message }, 'sparkplug node did not start'),
    );

  const ticker = clock.setInterval(() => {
    const now = clock.now();
    // A drone's GPS is due every 10th tick: skip the others here, without a call.
    for (const d of all) if (d.nextDue <= now) d.tick(now);
  }, config['fleet.tick']);

  const byId = new Map<string, AgentDevice | MqttDevice>(all.map((d) => [d.id, d]));
  const crash = async (deviceId: string, downtimeMs = config['faults.crashDowntime']): Promise<void> => {
    const d = byId.get(deviceId);
    if (!d) throw new ConfigError('deviceId', 'crash', `names no device of this fleet: ${deviceId}`);
    faults.counts.crashes++;
    if (d.kind === 'mqtt') d.crash(downtimeMs);
    else await pool.crash(d, downtimeMs, () => stopping);
  };
  const storm = (share = config['faults.stormFraction']): string[] => {
    faults.counts.storms++;
    const hit = faults.pick(mqttDevices, share);
    for (const d of hit) d.disconnect();
    if (pool.devices.length > 0) pool.storm();
    return hit.map((d) => d.id);
  };
  const every = (perMinute: number, fn: () => void) => {
    if (perMinute <= 0) return;
    const period = 60_000 / perMinute;
    const loop = () =>
      later(() => {
        if (stopping) return;
        fn();
        loop();
      }, period);
    loop();
  };
  every(config['faults.storms'], () => storm());
  every(config['faults.crashes'], () => {
    const [victim] = faults.pick(
      all.filter((d) => d.running),
      1 / Math.max(1, all.length),
    );
    if (victim) void crash(victim.id).catch(() => undefined);
  });

  const offeredPerSecond = total * ratePerDevice(config['fleet.profile'], config);
  const stats = (): FleetStats => {
    const agent = { ...pool.stats.snapshot(), connected: pool.connected };
    const mqtt = mqttStats.snapshot();
    return {
      connected: agent.connected + mqtt.connected,
      sent: agent.sent + mqtt.sent,
      acked: agent.acked + mqtt.acked,
      errors: agent.errors + mqtt.errors,
      dropped: agent.dropped + mqtt.dropped,
      byKind: { agent, mqtt },
      duplicatesRefused: pool.producer.totals.duplicates,
      faults: { ...faults.counts },
      offeredPerSecond,
      skippedSamples: all.reduce((sum, d) => sum + d.skipped, 0),
    };
  };

  const gauge = (name: string, help: string, read: (s: FleetStats, kind: DeviceKind) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        const s = stats();
        for (const kind of ['agent', 'mqtt'] as const) this.set({ kind }, read(s, kind));
      },
    });
  gauge('sim_devices_connected', 'Simulated devices connected', (s, k) => s.byKind[k].connected);
  gauge('sim_sent', 'Telemetry publishes sent (a counter; duplicates included)', (s, k) => s.byKind[k].sent);
  gauge('sim_acked', 'Telemetry publishes acknowledged (a counter)', (s, k) => s.byKind[k].acked);
  gauge('sim_errors', 'Errors seen by simulated devices (a counter)', (s, k) => s.byKind[k].errors);
  gauge('sim_dropped', 'Readings dropped on the device (a counter)', (s, k) => s.byKind[k].dropped);

  let metricsServer: MetricsServer | undefined;
  if (config['metrics.port'] > 0)
    metricsServer = await serveMetrics(registry, config['metrics.port'], config['metrics.host']);

  logger.info(
    {
      agents: nAgents,
      mqtt: nMqtt,
      profile: config['fleet.profile'],
      offeredPerSecond,
      redis: describeTarget(config),
    },
    'fleet started',
  );

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      stopping = true;
      clock.clearInterval(ticker);
      for (const t of timers) clock.clearTimeout(t);
      timers.clear();
      await Promise.all(mqttDevices.map((d) => d.stop(STOP_TIMEOUT_MS)));
      await Promise.all(tasmota.map((d) => d.stop()));
      await Promise.all(sparkplug.map((n) => n.stop()));
      const unsent = await pool.stop(STOP_TIMEOUT_MS);
      await metricsServer?.close();
      if (ownDataDir) rmSync(dataDir, { recursive: true, force: true });
      logger.info({ ...stats(), unsent }, 'fleet stopped');
    })();
    return stopped;
  };

  const audit = async (): Promise<AuditReport> => {
    const client = createRedis(config, { connectionName: 'firmware-sim:audit' });
    client.on('error', () => {});
    try {
      await waitReady(client, describeTarget(config), config['redis.connectTimeout']);
      return await ledger.audit(client, keys);
    } finally {
      client.disconnect();
    }
  };

  return {
    config,
    keys,
    devices: all.map((d) => ({ id: d.id, kind: d.kind })),
    tasmota: tasmota.map((d) => d.deviceId),
    tasmotaStats: () => tasmotaStats.snapshot(),
    sparkplug: sparkplug.map((n) => n.nodeId),
    sparkplugStats: () => sparkplugStats.snapshot(),
    stats,
    storm,
    crash,
    audit,
    stop,
  };
}
