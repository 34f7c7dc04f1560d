/**
 * The Redis deployments a suite runs against: a standalone server and a real
 * local Cluster, on Redis and (for the suites that pass ALL_SERVERS) on Valkey.
 * Suites that must behave the same on every one use `forEachTarget`.
 */
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe } from 'vitest';
import type { RedisConnectionConfig } from '#shared/redis/connect.js';
import { startRedisCluster } from './redis-cluster.js';
import { baseRedisConfig } from './redis-config.js';
import { startRedis } from './redis-server.js';
import { REDIS_ONLY, type ServerKind, titleOn } from './server-kind.js';

export { baseRedisConfig };

export interface Target {
  readonly name: 'standalone' | 'cluster';
  readonly server: ServerKind;
  /** Connection config for the project's factory. */
  readonly config: RedisConnectionConfig;
  /** A client for assertions (closed by the harness). */
  readonly client: Redis | Cluster;
}

export function forEachTarget(
  title: string,
  body: (target: () => Target) => void,
  servers: readonly ServerKind[] = REDIS_ONLY,
): void {
  for (const server of servers) forEachDeployment(titleOn(title, server), server, body);
}

function forEachDeployment(title: string, server: ServerKind, body: (target: () => Target) => void): void {
  for (const name of ['standalone', 'cluster'] as const) {
    describe(`${title} [${name}]`, () => {
      let target: Target | undefined;
      let destroy: (() => Promise<void>) | undefined;
      beforeAll(async () => {
        if (name === 'standalone') {
          const standalone = await startRedis({ server });
          const client = standalone.client();
          target = { name, server, config: baseRedisConfig(standalone.url), client };
          destroy = async () => {
            client.disconnect();
            await standalone.destroy();
          };
        } else {
          const cluster = await startRedisCluster({ server });
          const client = cluster.client();
          target = {
            name,
            server,
            config: baseRedisConfig(cluster.url, true, cluster.seeds.slice(1)),
            client,
          };
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
