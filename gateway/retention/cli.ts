#!/usr/bin/env node
/**
 * `tsx gateway/retention/cli.ts`: retention and the latest-state projection
 * without the MQTT side, for deployments (and tests) that want them in a
 * process of their own. The gateway runs the same services in-process.
 */
import { exitWithError, startProgram } from '#shared/config/program.js';
import { healthSchema, joinHealth } from '#shared/health.js';
import { Keys } from '#shared/keys.js';
import { createLogger, logSchema } from '#shared/log.js';
import { createRegistry, metricsSchema, serveMetrics } from '#shared/metrics.js';
import { createRedis, describeTarget, waitReady } from '#shared/redis/connect.js';
import { redisSchema } from '#shared/redis/options.js';
import { projectionOptions, projectionSchema } from '../projection/options.js';
import { ProjectionService } from '../projection/service.js';
import { retentionOptions, retentionSchema } from './options.js';
import { RetentionService } from './service.js';

const USAGE = `Usage: tsx gateway/retention/cli.ts [--config FILE] [--redis-url URL] [options]

Trims every stream by its retention policy (lag-aware) and keeps each device's
latest-state hash, as the gateway does, without MQTT. Options use the
gateway's names and environment variables (GATEWAY_...).`;

const schema = {
  ...redisSchema,
  ...logSchema,
  ...metricsSchema,
  ...healthSchema,
  ...retentionSchema,
  ...projectionSchema,
} as const;

async function main(): Promise<void> {
  const { config } = startProgram({ name: 'retention', usage: USAGE, schema, envPrefix: 'GATEWAY' });
  const logger = createLogger('retention', config['log.level']);
  const client = createRedis(config, { connectionName: 'retention' });
  client.on('error', () => {
    // reported by waitReady and the failing passes
  });
  const keys = new Keys(config['redis.keyPrefix'], config['redis.partitions']);
  const registry = createRegistry({ component: 'retention' });
  const services: Array<RetentionService | ProjectionService> = [];
  try {
    await waitReady(client, describeTarget(config), config['redis.connectTimeout']);
    const lossWindowMs = config['health.lossWindow'];
    if (config['retention.enabled'])
      services.push(
        new RetentionService(client, keys, retentionOptions(config), { logger, registry, lossWindowMs }),
      );
    if (config['projection.enabled'])
      services.push(
        new ProjectionService(client, keys, projectionOptions(config), { logger, registry, lossWindowMs }),
      );
    for (const s of services) await s.start();
  } catch (err) {
    exitWithError('retention', err);
  }
  const metrics =
    config['metrics.port'] > 0
      ? await serveMetrics(registry, config['metrics.port'], config['metrics.host'], () =>
          joinHealth(services.map((s) => s.health())),
        )
      : undefined;
  logger.info({ services: services.map((s) => s.name) }, 'started');
  const shutdown = () => {
    Promise.all(services.map((s) => s.stop()))
      .then(() => metrics?.close())
      .then(
        () => {
          client.disconnect();
          process.exit(0);
        },
        (err: unknown) => exitWithError('retention', err),
      );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

void main();
