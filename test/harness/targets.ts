/**
 * The Redis deployments a suite runs against: a standalone server and a real
 * local Cluster. Suites that must behave the same on both use `forEachTarget`.
 */
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe } from 'vitest';
import type { RedisConnectionConfig } from '#shared/redis/connect.js';
import { startRedisCluster } from './redis-cluster.js';
import { baseRedisConfig } from './redis-config.js';
import { startRedis } from './redis-server.js';

export { baseRedisConfig };

export interface Target {
  readonly name: 'standalone' | 'cluster';
  /** Connection config for the project's factory. */
  readonly config: RedisConnectionConfig;
  /** A client for assertions (closed by the harness). */
  readonly client: Redis | Cluster;
}

export function forEachTarget(title: string, body: (target: () => Target) => void): void {
  for (const name of ['standalone', 'cluster'] as const) {
    describe(`${title} [${name}]`, () => {
      let target: Target | undefined;
      let destroy: (() => Promise<void>) | undefined;
      beforeAll(async () => {
        if (name === 'standalone') {
          const server = await startRedis();
          const client = server.client();
          target = { name, config: baseRedisConfig(server.url), client };
          destroy = async () => {
            client.disconnect();
            await server.destroy();
          };
        } else {
          const cluster = await startRedisCluster();
          const client = cluster.client();
          target = { name, config: baseRedisConfig(cluster.url, true, cluster.seeds.slice(1)), client };
          destroy = async () => {
            client.disconnect();
            await cluster.destroy();
          };
        }
      });
      afterAll(async () => {
        await destroy?.();
      });
      body(() => {
        if (!target) throw new Error('target not started');
        return target;
      });
    });
  }
}
