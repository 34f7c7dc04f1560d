/**
 * `npm run chaos` (or `npm run bench -- chaos`): a bounded fault run and its audit.
 *
 * A real local Redis Cluster (3 masters, 1 replica each), two gateway
 * processes in broker mode, agent processes (sensors, journal, command
 * worker) and MQTT devices (QoS 1, one publish in flight, half on each
 * gateway), while this process sends commands to the agents. Every few
 * seconds one random fault: SIGKILL of the master owning a partition (it
 * comes back as a replica), of a gateway (restarted on its port; its devices
 * reconnect and resend), or of an agent (restarted on its data directory).
 * Retention runs in both gateways at once, trimming command streams hard.
 *
 * Then a read-back audit:
 *   acked                      entries acknowledged: agent batches (the agent's "telemetry acknowledged"
 *                              log) and MQTT publishes (PUBACK)
 *   lost_acked                 acknowledged entries not in the streams
 *   duplicates                 (device, seq) stored more than once
 *   order_violations           entries stored after an entry of the same device with a higher seq
 *   commands                   commands sent; commands_without_result / commands_with_two_results
 *   durability                 producer.durability of agents and gateways
 * At `replicated`, lost_acked, duplicates, commands_without_result and
 * commands_with_two_results must be 0: the run exits non-zero otherwise.
 *
 * Options: --seconds N (120), --durability local|replicated (replicated),
 * --agents N (4), --mqtt N (16), --seed N (random; printed: the same seed repeats the
 * sequence of faults, not their exact timing).
 * Traffic goes to 127.0.0.1 only; every server and process it starts is stopped.
 */
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { sendCommand } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import type { AgentProcess } from '../test/harness/agent-process.js';
import { readResults, resultsByCommand, startCommandAgent, tempDataDir } from '../test/harness/commands.js';
import { startGatewayProcessReady } from '../test/harness/gateway.js';
import { QosPublisher } from '../test/harness/mqtt-device.js';
import { freePort } from '../test/harness/ports.js';
import { startRedisCluster } from '../test/harness/redis-cluster.js';
import { readAllTelemetry, type StoredEntry } from '../test/harness/streams.js';
import type { BenchResult } from './run.js';

const { values: args } = parseArgs({
  args: process.argv.slice(3),
  options: {
    seconds: { type: 'string', default: '120' },
    durability: { type: 'string', default: 'replicated' },
    agents: { type: 'string', default: '4' },
    mqtt: { type: 'string', default: '16' },
    seed: { type: 'string' },
  },
});
const SECONDS = Number(args.seconds);
const DURABILITY = args.durability === 'local' ? 'local' : 'replicated';
const AGENTS = Number(args.agents);
const MQTT_DEVICES = Number(args.mqtt);
const SEED = args.seed ? Number(args.seed) : Math.floor(Math.random() * 2 ** 31);
const PARTITIONS = 8;

/** mulberry32: a seeded random source, so a run's fault sequence can be repeated. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}
const random = seeded(SEED);
/** The commands' targets draw from their own source, so the faults' sequence depends on the seed alone. */
const randomTarget = seeded(SEED + 1);
const pick = <T>(list: readonly T[], from = random): T => list[Math.floor(from() * list.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) =>
  process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** Parses "1-5,7" (the agent's acknowledgement log) into the set. */
function addRanges(into: Set<number>, ranges: string): void {
  for (const part of ranges.split(',')) {
    if (!part) continue;
    const [a, b] = part.split('-').map(Number);
    for (let s = a!; s <= (b ?? a!); s++) into.add(s);
  }
}

interface Counts {
  redis: number;
  gateway: number;
  agent: number;
}

export async function run(): Promise<BenchResult> {
  log(`seed ${SEED}, ${SECONDS} s, durability=${DURABILITY}, ${AGENTS} agents, ${MQTT_DEVICES} MQTT devices`);
  const cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
  const keys = new Keys('chaos', PARTITIONS);
  const client = cluster.client();
  const redisFlags = {
    'redis.url': cluster.url,
    'redis.cluster': true,
    'redis.clusterNodes': cluster.seeds.slice(1).join(','),
    'redis.keyPrefix': keys.prefix,
    'redis.partitions': PARTITIONS,
    'producer.durability': DURABILITY,
    'producer.replicas': 1,
    'producer.replicaTimeout': '500ms',
  };

  // Gateways: a fixed port each, so a restarted one takes its devices back.
  const gatewayPorts = [await freePort(), await freePort()];
  const startGw = (i: number) =>
    startGatewayProcessReady({
      ...redisFlags,
      'gateway.mode': 'broker',
      'gateway.id': `chaos-gw-${i}`,
      'broker.port': gatewayPorts[i]!,
      'retention.interval': '1s',
      'retention.commands.maxLen': 20,
      'log.level': 'info',
    });
  const gateways: AgentProcess[] = [];
  for (let i = 0; i < gatewayPorts.length; i++) gateways.push(await startGw(i));

  // Agents: every incarnation is kept, for its acknowledgement log.
  const agentIds = Array.from({ length: AGENTS }, (_, i) => `chaos-a${i}`);
  const agentDirs = agentIds.map(() => tempDataDir());
  const incarnations: AgentProcess[][] = agentIds.map(() => []);
  const startAgent = (i: number, sensors = 'constant') => {
    const p = startCommandAgent(cluster.url, keys, agentIds[i]!, agentDirs[i]!, {
      ...redisFlags,
      sensors,
      'sensors.constant.interval': 20,
      'journal.enabled': true,
      'journal.replay': 'ordered',
      'log.level': 'debug',
    });
    incarnations[i]!.push(p);
    return p;
  };
  const agents = agentIds.map((_, i) => startAgent(i));

  const mqttClients: MqttClient[] = [];
  const publishers: QosPublisher[] = [];
  for (let i = 0; i < MQTT_DEVICES; i++) {
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${gatewayPorts[i % 2]}`, {
      clientId: `chaos-m${i}`,
      clean: false,
      reconnectPeriod: 250,
      connectTimeout: 5000,
    });
    c.on('error', () => {});
    mqttClients.push(c);
    publishers.push(new QosPublisher(`chaos-m${i}`, c, 1, 20));
  }

  // Commands to the agents, 10 per second, for the whole run.
  const sent: string[] = [];
  let sending = true;
  let sendFailures = 0;
  const sender = (async () => {
    while (sending) {
      const id = pick(agentIds, randomTarget);
      try {
        const s = await sendCommand(client, keys, id, {
          name: 'test.effect',
          args: {},
          ttlMs: 120_000,
          // Sent at the run's level, as `ctl command send` is: queued means on a replica too.
          durability: DURABILITY === 'replicated' ? { replicas: 1, timeoutMs: 500 } : undefined,
        });
        sent.push(`${id}/${s.command.id}`);
      } catch {
        sendFailures++; // no master (or replica) for that slot just now: not sent, not counted
      }
      await sleep(100);
    }
  })();

  const kills: Counts = { redis: 0, gateway: 0, agent: 0 };
  const started = Date.now();
  const endAt = started + SECONDS * 1000;
  let lastProgress = started;
  try {
    await sleep(5000);
    while (Date.now() < endAt - 10_000) {
      const fault = pick(['redis', 'gateway', 'agent', 'agent'] as const);
      if (fault === 'redis') {
        const stream = keys.telemetryStreamFor(pick(agentIds));
        const { master } = await cluster.shardOf(stream);
        log(`SIGKILL redis master :${master.port}`);
        await cluster.kill(master);
        kills.redis++;
        // Only after its replica took over: a master without persistence that
        // restarts before the failover comes back empty and still owning its
        // slots, and wipes them (Redis' documented hazard, not ours to test).
        await cluster.waitNewMaster(stream, master, 60_000);
        await sleep(1000 + random() * 2000);
        await cluster.revive(master);
        await cluster.waitReplicasLinked(60_000);
      } else if (fault === 'gateway') {
        const i = Math.floor(random() * gateways.length);
        log(`SIGKILL gateway ${i}`);
        await gateways[i]!.kill('SIGKILL');
        kills.gateway++;
        await sleep(500 + random() * 2000);
        gateways[i] = await startGw(i);
      } else {
        const i = Math.floor(random() * agents.length);
        log(`SIGKILL agent ${agentIds[i]}`);
        await agents[i]!.kill('SIGKILL');
        kills.agent++;
        await sleep(200 + random() * 1000);
        agents[i] = startAgent(i);
      }
      await sleep(3000 + random() * 4000);
      if (Date.now() - lastProgress >= 10_000) {
        lastProgress = Date.now();
        const acked = publishers.reduce((n, p) => n + p.acked.size, 0);
        log(
          `${Math.round((Date.now() - started) / 1000)}/${SECONDS} s: kills ${JSON.stringify(kills)}, ` +
            `${acked} MQTT publishes acknowledged, ${sent.length} commands sent`,
        );
      }
    }
    await sleep(Math.max(0, endAt - Date.now()));

    log('stopping: devices drain, agents stop and finish their journals and commands');
    sending = false;
    await sender;
    await Promise.all(publishers.map((p) => Promise.race([p.stop(), sleep(30_000)])));
    for (const a of agents) await a.kill('SIGTERM');
    // Once more without sensors: the journal's backlog and the commands still pending are finished.
    const finishers = agentIds.map((_, i) => startAgent(i, ''));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const byCommand = resultsByCommand(await readResults(client, keys));
      if (sent.every((k) => byCommand.has(k)) || Date.now() > deadline) break;
      await sleep(500);
    }
    await sleep(3000); // journal replay (ordered, and idle-polled) finishes its last batch
    for (const a of finishers) await a.kill('SIGTERM');

    // The audit.
    const stored = await readAllTelemetry(client, keys);
    const byDevice = new Map<string, StoredEntry[]>();
    for (const e of stored) {
      const list = byDevice.get(e.deviceId) ?? [];
      list.push(e);
      byDevice.set(e.deviceId, list);
    }
    const ackedByDevice = new Map<string, Set<number>>();
    agentIds.forEach((id, i) => {
      const set = new Set<number>();
      for (const p of incarnations[i]!)
        for (const l of p.logs()) if (l.msg === 'telemetry acknowledged') addRanges(set, String(l.acked));
      ackedByDevice.set(id, set);
    });
    for (const p of publishers) ackedByDevice.set(p.id, p.acked);
    let acked = 0;
    let lostAcked = 0;
    let duplicates = 0;
    let orderViolations = 0;
    let agentOrderViolations = 0;
    for (const [id, ackedSeqs] of ackedByDevice) {
      const entries = byDevice.get(id) ?? [];
      const have = new Set(entries.map((e) => e.seq));
      duplicates += entries.length - have.size;
      let high = 0;
      for (const e of entries) {
        if (e.seq < high) {
          orderViolations++;
          if (agentIds.includes(id)) agentOrderViolations++;
        }
        high = Math.max(high, e.seq);
      }
      acked += ackedSeqs.size;
      for (const s of ackedSeqs) if (!have.has(s)) lostAcked++;
    }
    const byCommand = resultsByCommand(await readResults(client, keys));
    const result: BenchResult = {
      seconds: SECONDS,
      kills_redis: kills.redis,
      kills_gateway: kills.gateway,
      kills_agent: kills.agent,
      acked,
      lost_acked: lostAcked,
      duplicates,
      order_violations: orderViolations,
      commands: sent.length,
      commands_without_result: sent.filter((k) => !byCommand.has(k)).length,
      commands_with_two_results: [...byCommand.values()].filter((r) => r.length > 1).length,
      durability: DURABILITY,
      order_violations_agents: agentOrderViolations,
      stored_entries: stored.length,
      commands_not_sent_no_master: sendFailures,
      seed: SEED,
    };
    const broken = [
      'lost_acked',
      'duplicates',
      'commands_without_result',
      'commands_with_two_results',
    ].filter((k) => result[k] !== 0);
    if (DURABILITY === 'replicated' && broken.length > 0) {
      log(`FAILED at replicated: ${broken.join(', ')} not 0 (rerun with --seed ${SEED})`);
      process.exitCode = 1;
    }
    return result;
  } finally {
    sending = false;
    await Promise.all(mqttClients.map((c) => c.endAsync(true).catch(() => {})));
    await Promise.all([...gateways, ...incarnations.flat()].map((p) => p.kill('SIGKILL')));
    client.disconnect();
    await cluster.destroy();
  }
}
