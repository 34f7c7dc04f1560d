/**
 * A real local Redis Cluster built from redis-server processes: three masters,
 * optionally with replicas (for failover and replicated-durability tests).
 */

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { freePort } from './ports.js';
import { type RedisServer, startLocalRedis } from './redis-server.js';
import type { ServerKind } from './server-kind.js';

const run = promisify(execFile);

export interface RedisClusterHandle {
  readonly nodes: RedisServer[];
  /** Seed URL for the config (any node). */
  readonly url: string;
  /** host:port of every node. */
  readonly seeds: string[];
  client(): Cluster;
  /** The node serving `key`'s slot as master, and its replica (none while its old master is down). */
  shardOf(key: string): Promise<{ master: RedisServer; replica: RedisServer | undefined }>;
  /** SIGKILLs a node, as a crash would. */
  kill(node: RedisServer): Promise<void>;
  /** Starts a killed node again: it rejoins the cluster (a failed-over master as a replica). */
  revive(node: RedisServer): Promise<void>;
  /** Waits until `key`'s slot is served by a master other than `old`. */
  waitNewMaster(key: string, old: RedisServer, timeoutMs?: number): Promise<void>;
  /** Waits until every shard has a replica with its link up (all killed nodes revived first). */
  waitReplicasLinked(timeoutMs?: number): Promise<void>;
  destroy(): Promise<void>;
}

export async function startRedisCluster(
  options: { masters?: number; replicasPerMaster?: number; server?: ServerKind } = {},
): Promise<RedisClusterHandle> {
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 0;
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      nodes.push(
        await startLocalRedis({
          server: options.server,
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            '2000',
          ],
          // The bus port, picked free like the client port (the default, port + 10000, may be
          // taken), and again if the node could not bind it.
          freshArgs: async () => ['--cluster-port', String(await freePort())],
        }),
      );
    }
    const seeds = nodes.map((n) => `${n.host}:${n.port}`);
    await run(
      'redis-cli',
      ['--cluster', 'create', ...seeds, '--cluster-replicas', String(replicas), '--cluster-yes'],
      {
        timeout: 30_000,
      },
    );
    await waitClusterOk(nodes);
    const down = new Set<RedisServer>();
    const shardOf = (key: string) => findShard(nodes, down, key);
    return {
      nodes,
      url: nodes[0]!.url,
      seeds,
      client: () => new Cluster(nodes.map((n) => ({ host: n.host, port: n.port }))),
      shardOf,
      kill: async (node) => {
        down.add(node);
        await node.kill();
      },
      revive: async (node) => {
        if (!down.has(node)) return;
        await node.start();
        down.delete(node);
      },
      waitNewMaster: (key, old, timeoutMs = 30_000) =>
        until(
          async () => (await shardOf(key).catch(() => undefined))?.master !== old,
          timeoutMs,
          `a new master for ${key}`,
        ),
      waitReplicasLinked: (timeoutMs = 30_000) =>
        until(
          async () => (await linkedReplicas(nodes)) === masters * replicas,
          timeoutMs,
          'every replica linked',
        ),
      destroy: async () => {
        await Promise.all(nodes.map((n) => n.destroy()));
      },
    };
  } catch (err) {
    await Promise.all(nodes.map((n) => n.destroy()));
    throw err;
  }
}

async function waitClusterOk(nodes: RedisServer[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const node of nodes) {
    const c = new Redis({ host: node.host, port: node.port });
    try {
      for (;;) {
        const info = await c.cluster('INFO');
        if (String(info).includes('cluster_state:ok')) break;
        if (Date.now() > deadline) throw new Error(`cluster not ok on ${node.port}: ${info}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      c.disconnect();
    }
  }
}

async function findShard(
  nodes: readonly RedisServer[],
  down: ReadonlySet<RedisServer>,
  key: string,
): Promise<{ master: RedisServer; replica: RedisServer | undefined }> {
  const live = nodes.find((n) => !down.has(n)) ?? nodes[0]!;
  const probe = new Redis({ host: live.host, port: live.port, maxRetriesPerRequest: 1 });
  try {
    const slot = Number(await probe.cluster('KEYSLOT', key));
    const ranges = await probe.cluster('SLOTS');
    const range = ranges.find(([from, to]) => slot >= from && slot <= to);
    if (!range) throw new Error(`slot ${slot} has no master`);
    const [, , master, replica] = range;
    const m = nodes.find((n) => n.port === master?.[1]);
    if (!m) throw new Error(`slot ${slot}: its master is not one of this cluster's nodes`);
    return { master: m, replica: nodes.find((n) => n.port === replica?.[1]) };
  } finally {
    probe.disconnect();
  }
}

/** Replicas whose link to their master is up. */
async function linkedReplicas(nodes: readonly RedisServer[]): Promise<number> {
  let linked = 0;
  for (const n of nodes) {
    const c = new Redis({ host: n.host, port: n.port, maxRetriesPerRequest: 1, lazyConnect: true });
    c.on('error', () => {});
    try {
      await c.connect();
      const info = await c.info('replication');
      if (info.includes('role:slave') && info.includes('master_link_status:up')) linked++;
    } catch {
      // down or starting
    } finally {
      c.disconnect();
    }
  }
  return linked;
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
