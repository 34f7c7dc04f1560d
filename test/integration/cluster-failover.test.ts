/**
 * docs/guarantees.md §1, §2, §3 across a Redis Cluster failover: a real local
 * Cluster of three masters, each with one replica. While agent processes and
 * MQTT devices (through the gateway) publish and commands flow, the master
 * that owns the agents' partition is SIGKILLed (its replica takes over after
 * the node timeout) or demoted with CLUSTER FAILOVER on its replica.
 *
 * - producer.durability=replicated (WAIT on every batch): nothing that was
 *   acknowledged is lost, to the agent or to an MQTT device (PUBACK);
 * - producer.durability=local: the test measures how many acknowledged
 *   entries the SIGKILL lost (asynchronous replication's window) and prints
 *   it; docs/scaling.md states the figure and why it is not zero by promise;
 * - a graceful CLUSTER FAILOVER loses nothing even at local;
 * - every command ends in exactly one result.
 */

import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCommand } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import type { AgentProcess } from '../harness/agent-process.js';
import { readResults, resultsByCommand, startCommandAgent, tempDataDir } from '../harness/commands.js';
import { type RunningGateway, startGateway } from '../harness/gateway.js';
import { QosPublisher } from '../harness/mqtt-device.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisClusterHandle, startRedisCluster } from '../harness/redis-cluster.js';
import type { RedisServer } from '../harness/redis-server.js';
import { readAllTelemetry, readStream, waitFor } from '../harness/streams.js';

type Durability = 'local' | 'replicated';
type Fault = 'sigkill' | 'failover';

let cluster: RedisClusterHandle;
beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
}, 60_000);
afterAll(async () => {
  await cluster?.destroy();
});

interface Run {
  /** Agent entries missing from 1..max: acknowledged and lost (nothing else drops them here). */
  agentLost: number;
  agentEntries: number;
  /** PUBACKed MQTT publishes missing from the stream. */
  mqttLost: number;
  mqttAcked: number;
  duplicates: number;
  commands: number;
  commandsWithoutResult: number;
  commandsWithTwoResults: number;
}

const DEVICES = ['fo-a', 'fo-b'];
const MQTT_DEVICES = 2;

async function runFailover(durability: Durability, fault: Fault): Promise<Run> {
  const keys = new Keys(randomPrefix(), 4);
  const client = cluster.client();
  const durabilityFlags = {
    'producer.durability': durability,
    'producer.replicas': 1,
    'producer.replicaTimeout': '500ms',
  };
  const clusterFlags = {
    'redis.cluster': true,
    'redis.clusterNodes': cluster.seeds.slice(1).join(','),
  };
  const agentDirs = DEVICES.map(() => tempDataDir());
  const startAgents = (sensors: string) =>
    DEVICES.map((id, i) =>
      startCommandAgent(cluster.url, keys, id, agentDirs[i]!, {
        ...clusterFlags,
        ...durabilityFlags,
        sensors,
        'sensors.constant.interval': 10,
        'journal.enabled': true,
        'log.level': 'info',
      }),
    );
  let agents: AgentProcess[] = startAgents('constant');
  let gateway: RunningGateway | undefined;
  const mqttClients: MqttClient[] = [];
  const sent: string[] = [];
  let sending = true;
  let killed: RedisServer | undefined;
  try {
    gateway = await startGateway({
      'gateway.mode': 'broker',
      'redis.url': cluster.url,
      ...clusterFlags,
      'redis.keyPrefix': keys.prefix,
      'redis.partitions': keys.partitions,
      ...durabilityFlags,
    });
    const publishers: QosPublisher[] = [];
    for (let i = 0; i < MQTT_DEVICES; i++) {
      const c = await mqtt.connectAsync(gateway.url, {
        clientId: `fo-mqtt-${i}`,
        clean: false,
        reconnectPeriod: 100,
      });
      mqttClients.push(c);
      publishers.push(new QosPublisher(`fo-mqtt-${i}`, c, 8));
    }
    const sender = (async () => {
      // A command every 100 ms to each agent, for the whole run.
      while (sending) {
        for (const id of DEVICES) {
          try {
            const s = await sendCommand(client, keys, id, {
              name: 'test.effect',
              args: {},
              ttlMs: 60_000,
              // At `replicated` a send resolves once a replica has the command, as `ctl` sends it.
              durability: durability === 'replicated' ? { replicas: 1, timeoutMs: 500 } : undefined,
            });
            sent.push(`${id}/${s.command.id}`);
          } catch {
            // no master (or, at replicated, no replica) for the slot just now: not sent, and
            // the sender goes on with a new command
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const stream = keys.telemetryStreamFor(DEVICES[0]!);
    const countOf = async (id: string) =>
      (await readStream(client, keys.telemetryStreamFor(id)).catch(() => [])).filter((e) => e.deviceId === id)
        .length;
    await waitFor(async () => (await countOf(DEVICES[0]!)) >= 100, 30_000, '100 entries before the fault');
    await waitFor(async () => publishers.every((p) => p.acked.size >= 50), 30_000, 'MQTT devices publishing');

    const { master, replica } = await cluster.shardOf(stream);
    if (fault === 'sigkill') {
      killed = master;
      await cluster.kill(master);
    } else {
      if (!replica) throw new Error('the shard has no replica to fail over to');
      const r = new Redis({ host: replica.host, port: replica.port });
      await r.cluster('FAILOVER');
      r.disconnect();
    }
    await cluster.waitNewMaster(stream, master);
    // The killed node comes back and rejoins as its successor's replica: until
    // then that shard has no replica, and at `replicated` nothing on it can be
    // acknowledged (the agent journals, the gateway holds PUBACKs back).
    if (killed) await cluster.revive(killed);
    const after = await countOf(DEVICES[0]!);
    await waitFor(
      async () => (await countOf(DEVICES[0]!)) >= after + 100,
      60_000,
      '100 entries after the fault',
    );
    const ackedAfter = publishers.map((p) => p.acked.size);
    await waitFor(
      async () => publishers.every((p, i) => p.acked.size >= ackedAfter[i]! + 50),
      60_000,
      'MQTT publishes acknowledged after the fault',
    );

    sending = false;
    await sender;
    await Promise.all(publishers.map((p) => p.stop()));
    for (const a of agents) expect(await a.kill('SIGTERM')).toBe(0);
    // Whatever a stop left journaled is replayed by the same agents, without sensors.
    if (agents.some((a) => a.output().includes('journal closed with a backlog'))) {
      agents = startAgents('');
      for (const a of agents) await a.waitForLog((l) => l.msg === 'journal drained', 30_000).catch(() => {});
      for (const a of agents) await a.kill('SIGTERM');
    } else {
      // The agents finish the commands already delivered to them when they run again.
      agents = startAgents('');
    }
    await waitFor(
      async () => {
        const byCommand = resultsByCommand(await readResults(client, keys));
        return sent.every((k) => byCommand.has(k));
      },
      60_000,
      'a result for every command',
    ).catch(() => {});
    for (const a of agents) await a.kill('SIGTERM');

    const stored = await readAllTelemetry(client, keys);
    let agentLost = 0;
    let agentEntries = 0;
    let duplicates = 0;
    for (const id of DEVICES) {
      const seqs = stored.filter((e) => e.deviceId === id).map((e) => e.seq);
      const have = new Set(seqs);
      duplicates += seqs.length - have.size;
      const max = Math.max(...seqs);
      agentEntries += max;
      for (let s = 1; s <= max; s++) if (!have.has(s)) agentLost++;
    }
    let mqttLost = 0;
    let mqttAcked = 0;
    for (const p of publishers) {
      const seqs = stored.filter((e) => e.deviceId === p.id).map((e) => e.seq);
      const have = new Set(seqs);
      duplicates += seqs.length - have.size;
      mqttAcked += p.acked.size;
      for (const s of p.acked) if (!have.has(s)) mqttLost++;
    }
    const byCommand = resultsByCommand(await readResults(client, keys));
    const missing = sent.filter((k) => !byCommand.has(k));
    if (missing.length > 0) {
      // Where each command without a result stopped: its ledger says how far it got.
      const ledgers = await Promise.all(
        missing.slice(0, 10).map(async (k) => {
          const [id, commandId] = k.split('/') as [string, string];
          return { k, ledger: await client.hgetall(keys.commandLedger(id, commandId)) };
        }),
      );
      console.info(`commands without a result (first 10): ${JSON.stringify(ledgers)}`);
    }
    const run: Run = {
      agentLost,
      agentEntries,
      mqttLost,
      mqttAcked,
      duplicates,
      commands: sent.length,
      commandsWithoutResult: missing.length,
      commandsWithTwoResults: [...byCommand.values()].filter((r) => r.length > 1).length,
    };
    console.info(`cluster failover, ${fault}, durability=${durability}: ${JSON.stringify(run)}`);
    return run;
  } finally {
    sending = false;
    await Promise.all(mqttClients.map((c) => c.endAsync(true)));
    await gateway?.stop();
    await Promise.all(agents.map((a) => a.kill('SIGKILL')));
    client.disconnect();
    if (killed) await cluster.revive(killed);
    await cluster.waitReplicasLinked();
  }
}

describe('Redis Cluster failover under load', () => {
  it('replicated: a SIGKILLed master loses nothing acknowledged, commands end once', async () => {
    const run = await runFailover('replicated', 'sigkill');
    expect(run.agentLost).toBe(0);
    expect(run.mqttLost).toBe(0);
    expect(run.mqttAcked).toBeGreaterThan(0);
    expect(run.duplicates).toBe(0);
    expect(run.commands).toBeGreaterThan(0);
    expect(run.commandsWithoutResult).toBe(0);
    expect(run.commandsWithTwoResults).toBe(0);
  }, 180_000);

  it('local: a graceful CLUSTER FAILOVER loses nothing', async () => {
    const run = await runFailover('local', 'failover');
    expect(run.agentLost).toBe(0);
    expect(run.mqttLost).toBe(0);
    expect(run.duplicates).toBe(0);
    expect(run.commandsWithTwoResults).toBe(0);
  }, 180_000);

  it('local: a SIGKILLed master may lose acknowledged entries; the run measures how many', async () => {
    const run = await runFailover('local', 'sigkill');
    // Asynchronous replication: what the master acknowledged and had not yet
    // sent its replica is gone with it. Measured and printed, not promised;
    // what is promised still holds: nothing twice, one result per command.
    expect(run.agentEntries).toBeGreaterThan(200);
    expect(run.duplicates).toBe(0);
    expect(run.commandsWithTwoResults).toBe(0);
  }, 180_000);
});
