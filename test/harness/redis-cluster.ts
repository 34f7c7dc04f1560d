/**
 * A real local Redis Cluster built from redis-server processes: three masters,
 * optionally with replicas (for failover and replicated-durability tests).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { type RedisServer, startLocalRedis } from './redis-server.js';

const run = promisify(execFile);

export interface RedisClusterHandle {
  readonly nodes: RedisServer[];
  /** Seed URL for the config (any node). */
  readonly url: string;
  /** host:port of every node. */
  readonly seeds: string[];
  client(): Cluster;
  destroy(): Promise<void>;
}

export async function startRedisCluster(
  options: { masters?: number; replicasPerMaster?: number } = {},
): Promise<RedisClusterHandle> {
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 0;
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      nodes.push(
        await startLocalRedis({
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            '2000',
          ],
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
    return {
      nodes,
      url: nodes[0]!.url,
      seeds,
      client: () => new Cluster(nodes.map((n) => ({ host: n.host, port: n.port }))),
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
