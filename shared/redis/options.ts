/** Redis connection options shared by every program's config schema. */
import { opt } from '../config/schema.js';

export const redisSchema = {
  'redis.url': opt.string(
    'redis://127.0.0.1:6379',
    'Redis URL (redis:// or rediss:// for TLS); for a cluster, any node',
    {
      env: 'REDIS_URL',
    },
  ),
  'redis.cluster': opt.boolean(
    false,
    'Connect as a Redis Cluster client (seed nodes: redis.url plus redis.clusterNodes)',
  ),
  'redis.clusterNodes': opt.list([], 'Extra cluster seed nodes, host:port,host:port'),
  'redis.username': opt.optionalString('ACL user name (overrides the URL user)'),
  'redis.password': opt.optionalString('Password for the ACL user (overrides the URL password)', {
    secret: true,
  }),
  'redis.tls': opt.boolean(false, 'Use TLS (implied by a rediss:// URL)'),
  'redis.tlsCaFile': opt.optionalString('PEM file of the CA that signed the server certificate'),
  'redis.tlsCertFile': opt.optionalString('PEM client certificate, for servers that require one'),
  'redis.tlsKeyFile': opt.optionalString('PEM key of the client certificate'),
  'redis.tlsRejectUnauthorized': opt.boolean(true, 'Verify the server certificate (turn off only for tests)'),
  'redis.connectTimeout': opt.duration(
    5000,
    'How long to wait for a connection before reporting Redis unreachable',
    {
      min: 100,
    },
  ),
  'redis.keyPrefix': opt.string('iot', 'Prefix of every key this system writes'),
  'redis.partitions': opt.integer(
    16,
    'Number of telemetry partitions (must match across all agents and gateways)',
    {
      min: 1,
      max: 4096,
    },
  ),
} as const;

export type RedisSchema = typeof redisSchema;
