/**
 * The latest-state projection on a worker thread of the gateway process (see
 * thread.ts): its own Redis connection and event loop, so reading every
 * telemetry entry back, decoding it and the garbage that makes never hold up
 * the MQTT side's PUBACKs. Reports its metric totals and health to the gateway
 * every REPORT_INTERVAL_MS and when it stops.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Keys } from '#shared/keys.js';
import { createLogger } from '#shared/log.js';
import { createRegistry } from '#shared/metrics.js';
import { createRedis, type RedisConnectionConfig } from '#shared/redis/connect.js';
import { type ProjectionConfig, projectionOptions } from './options.js';
import { createProjectionMetrics, ProjectionService } from './service.js';
import {
  type FromProjectionThread,
  metricTotals,
  REPORT_INTERVAL_MS,
  type ToProjectionThread,
} from './thread-protocol.js';

export interface ProjectionWorkerData {
  config: RedisConnectionConfig &
    Partial<ProjectionConfig> & {
      'redis.keyPrefix': string;
      'redis.partitions': number;
      'health.lossWindow'?: number;
    };
  consumer: string;
  gatewayId: string;
  logLevel: string;
}

const port = parentPort;
if (!port) throw new TypeError('gateway/projection/worker.ts runs as a worker thread (see thread.ts)');
const data = workerData as ProjectionWorkerData;
const post = (m: FromProjectionThread) => port.postMessage(m);

const logger = createLogger('gateway', data.logLevel).child({ thread: 'projection' });
const client = createRedis(data.config, { connectionName: `projection:${data.gatewayId}` });
client.on('error', () => {
  // Failed rounds are counted and logged by the service; their entries stay pending.
});
const registry = createRegistry({}, false);
const metrics = createProjectionMetrics(registry);
const projection = new ProjectionService(
  client,
  new Keys(data.config['redis.keyPrefix'], data.config['redis.partitions']),
  projectionOptions({ ...data.config, 'projection.consumer': data.consumer }),
  { logger, metrics, lossWindowMs: data.config['health.lossWindow'] },
);

const report = async () =>
  post({ type: 'report', totals: await metricTotals(metrics), health: projection.health() });
let timer: NodeJS.Timeout | undefined;

port.on('message', async (m: ToProjectionThread) => {
  if (m.type !== 'stop') return;
  if (timer) clearInterval(timer);
  try {
    await projection.stop();
    await report();
  } finally {
    client.disconnect();
    post({ type: 'stopped' });
    port.close();
  }
});

try {
  await projection.start();
  timer = setInterval(() => void report(), REPORT_INTERVAL_MS);
  post({ type: 'started' });
} catch (err) {
  post({ type: 'failed', error: err instanceof Error ? err.message : String(err) });
  client.disconnect();
  port.close();
}
