/** A connection config for a test server, every option at its default but the URL. */
import type { RedisConnectionConfig } from '#shared/redis/connect.js';

export function baseRedisConfig(url: string, cluster = false, nodes: string[] = []): RedisConnectionConfig {
  return {
    'redis.url': url,
    'redis.cluster': cluster,
    'redis.clusterNodes': nodes,
    'redis.username': undefined,
    'redis.password': undefined,
    'redis.tls': false,
    'redis.tlsCaFile': undefined,
    'redis.tlsCertFile': undefined,
    'redis.tlsKeyFile': undefined,
    'redis.tlsRejectUnauthorized': true,
    'redis.connectTimeout': 5000,
  };
}
