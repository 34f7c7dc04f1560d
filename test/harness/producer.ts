/**
 * Telemetry producers on a test target (forEachTarget): each with its own
 * connection and key prefix, disconnected after each test.
 */
import { afterEach } from 'vitest';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRedis, type RedisClient, waitReady } from '#shared/redis/connect.js';
import { TelemetryProducer } from '#shared/telemetry/producer.js';
import { type ProducerOptions, producerOptions } from '#shared/telemetry/producer-options.js';
import { randomPrefix } from './prefix.js';
import type { Target } from './targets.js';

export function useProducers(target: () => Target) {
  const clients: RedisClient[] = [];
  afterEach(() => {
    for (const c of clients.splice(0)) c.disconnect();
  });
  /** A producer with the defaults, a 2 ms linger and `overrides`, over `partitions` partitions. */
  return async (overrides: Partial<ProducerOptions> = {}, partitions = 8) => {
    const keys = new Keys(randomPrefix(), partitions);
    const client = createRedis(target().config, { failFast: true });
    clients.push(client);
    await waitReady(client, 'test', 10_000);
    const producer = new TelemetryProducer(
      client,
      keys,
      { ...producerOptions(), lingerMs: 2, ...overrides },
      { logger: silentLogger() },
    );
    return { keys, client, producer };
  };
}
