/**
 * The device agent: sensors -> envelopes -> batched producer -> Redis.
 * Owns its Redis connection, metrics endpoint and sequence file, and shuts
 * down gracefully, flushing what it holds.
 */
import { join } from 'node:path';
import { type Clock, systemClock } from '#shared/clock.js';
import { ConfigError } from '#shared/errors.js';
import { DEVICE_ID_PATTERN, fnv1a32, Keys } from '#shared/keys.js';
import { EpisodeLog, type Logger } from '#shared/log.js';
import { Counter, createRegistry, type MetricsServer, type Registry, serveMetrics } from '#shared/metrics.js';
import { createRedis, describeTarget, type RedisClient, waitReady } from '#shared/redis/connect.js';
import { createProducerMetrics, TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import type { AgentConfig } from './config.js';
import { createSensor } from './sensors/index.js';
import { Sampler } from './sensors/sampler.js';
import { PersistentSequence } from './sequence.js';
import { DeviceTelemetry } from './telemetry.js';

export interface AgentDeps {
  logger: Logger;
  clock?: Clock;
  registry?: Registry;
}

export class Agent {
  readonly keys: Keys;
  readonly client: RedisClient;
  readonly producer: TelemetryProducer;
  readonly sampler: Sampler;
  readonly telemetry: DeviceTelemetry;
  readonly registry: Registry;
  private readonly sequence: PersistentSequence;
  private readonly dropped: Counter<'reason'>;
  private readonly dropLog: EpisodeLog;
  private metricsServer: MetricsServer | undefined;
  private readonly clock: Clock;
  droppedEntries = 0;

  constructor(
    readonly config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    const id = config['device.id'];
    if (!id)
      throw new ConfigError('device.id', 'config', 'is required (flag --device-id or AGENT_DEVICE_ID)');
    if (!DEVICE_ID_PATTERN.test(id))
      throw new ConfigError('device.id', 'config', `must match ${DEVICE_ID_PATTERN}`);
    this.clock = deps.clock ?? systemClock;
    this.keys = new Keys(config['redis.keyPrefix'], config['redis.partitions']);
    this.registry = deps.registry ?? createRegistry({ device: id });
    const logger = deps.logger;
    this.client = createRedis(config, { connectionName: `agent:${id}`, failFast: true });
    this.client.on('error', () => {
      // Connection errors surface through failed batches and the outage episode log.
    });
    this.producer = new TelemetryProducer(this.client, this.keys, producerOptions(config), {
      logger,
      metrics: createProducerMetrics(this.registry),
      clock: this.clock,
    });
    this.dropped = new Counter({
      name: 'agent_samples_dropped_total',
      help: 'Samples the agent could not keep, by reason',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.dropLog = new EpisodeLog(logger, 'samples dropped: producer buffer full');
    const samples = new Counter({
      name: 'agent_samples_total',
      help: 'Samples taken, by type',
      labelNames: ['type'],
      registers: [this.registry],
    });
    this.sequence = PersistentSequence.open(
      join(config['device.dataDir'], 'sequence'),
      config['device.sequenceBlock'],
    );
    this.telemetry = new DeviceTelemetry(
      id,
      this.sequence,
      this.producer,
      () => {
        this.droppedEntries++;
        this.dropped.inc({ reason: 'backpressure' });
        this.dropLog.hit();
      },
      samples,
    );
    this.sampler = new Sampler(
      (type, payload, time) => this.telemetry.publish(type, payload, time),
      this.clock,
      logger,
    );
    const settings = { seed: fnv1a32(id), constantPayloadBytes: config['sensors.constant.payloadBytes'] };
    for (const name of config.sensors) {
      const interval = (config as Record<string, unknown>)[`sensors.${name}.interval`];
      this.sampler.add(createSensor(name, settings), typeof interval === 'number' ? interval : 1000);
    }
  }

  get logger(): Logger {
    return this.deps.logger;
  }

  /** Starts sampling. Waits up to redis.connectTimeout for Redis, but samples either way. */
  async start(): Promise<void> {
    const target = describeTarget(this.config);
    if (this.config['metrics.port'] > 0) {
      this.metricsServer = await serveMetrics(
        this.registry,
        this.config['metrics.port'],
        this.config['metrics.host'],
        () => {
          const dropping = this.dropLog.isActive;
          return { healthy: !dropping, reasons: dropping ? ['dropping samples: producer buffer full'] : [] };
        },
      );
      this.logger.info({ port: this.metricsServer.port }, 'metrics endpoint listening');
    }
    this.sampler.start();
    this.logger.info(
      {
        deviceId: this.telemetry.deviceId,
        redis: target,
        sensors: this.sampler.types,
        seq: this.sequence.current,
      },
      'agent started',
    );
    try {
      await waitReady(this.client, target, this.config['redis.connectTimeout']);
      this.logger.info({ redis: target }, 'connected to Redis');
    } catch (err) {
      this.logger.error(
        { redis: target },
        `${(err as Error).message}; sampling goes on and appends are retried`,
      );
    }
  }

  /** Graceful stop: stop sampling, flush for up to agent.shutdownTimeout, persist the sequence. */
  async stop(): Promise<{ unsent: number }> {
    this.sampler.stop();
    const left = await this.producer.close(this.config['agent.shutdownTimeout']);
    this.sequence.close();
    await this.metricsServer?.close();
    this.client.disconnect();
    this.dropLog.end();
    if (left.length > 0)
      this.logger.warn({ unsent: left.length }, 'stopped with entries not acknowledged by Redis');
    this.logger.info({ seq: this.sequence.current, ...this.producer.totals }, 'agent stopped');
    return { unsent: left.length };
  }
}
