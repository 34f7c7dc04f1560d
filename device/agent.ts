/**
 * The device agent: sensors -> envelopes -> batched producer -> Redis.
 * Owns its Redis connection, metrics endpoint and sequence file, and shuts
 * down gracefully, flushing what it holds.
 */
import { join } from 'node:path';
import { type Clock, systemClock } from '#shared/clock.js';
import { ConfigError } from '#shared/errors.js';
import { HealthBook } from '#shared/health.js';
import { DEVICE_ID_PATTERN, fnv1a32, Keys } from '#shared/keys.js';
import { EpisodeLog, type Logger } from '#shared/log.js';
import { Counter, createRegistry, type MetricsServer, type Registry, serveMetrics } from '#shared/metrics.js';
import { createRedis, describeTarget, type RedisClient, waitReady } from '#shared/redis/connect.js';
import { createProducerMetrics, TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import { type CommandWorker, createCommandWorker } from './commands/index.js';
import { type AgentConfig, agentSchema } from './config.js';
import { journalOptions } from './journal/options.js';
import { StoreAndForward } from './journal/store-and-forward.js';
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
  /** What /healthz reports (shared/health.ts): readings dropped, journal entries lost. */
  readonly health: HealthBook;
  /** Control commands (commands.enabled); see docs/commands.md. */
  readonly commands: CommandWorker | undefined;
  /** Disk journal and replay (journal.enabled). */
  readonly forward: StoreAndForward | undefined;
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
    this.health = new HealthBook(config['health.lossWindow'], this.clock);
    const logger = deps.logger;
    this.client = createRedis(config, { connectionName: `agent:${id}`, failFast: true });
    this.client.on('error', () => {
      // Connection errors surface through failed batches and the outage episode log.
    });
    const producerOpts = producerOptions(config);
    this.producer = new TelemetryProducer(this.client, this.keys, producerOpts, {
      logger,
      metrics: createProducerMetrics(this.registry),
      clock: this.clock,
      health: this.health,
      hooks: {
        onFailed: (entries, error) => this.forward?.onFailed(entries, error) ?? false,
        onAcked: (entries) => this.forward?.onAcked(entries, 'live'),
      },
    });
    this.dropped = new Counter({
      name: 'agent_samples_dropped_total',
      help: 'Samples the agent could not keep, by reason',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.dropLog = new EpisodeLog(logger, 'samples dropped: producer buffer full');
    const readingsDropped = this.health.loss(
      'readings-dropped',
      'readings dropped: the producer buffer was full and no journal took them (see agent_samples_dropped_total)',
    );
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
    if (config['journal.enabled']) {
      this.forward = new StoreAndForward(
        this.client,
        this.keys,
        this.producer,
        producerOpts,
        journalOptions(config, join(config['device.dataDir'], 'journal')),
        {
          logger,
          clock: this.clock,
          registry: this.registry,
          dropped: this.dropped,
          health: this.health,
        },
      );
    }
    this.telemetry = new DeviceTelemetry(
      id,
      this.sequence,
      this.forward ?? this.producer,
      () => {
        this.droppedEntries++;
        this.dropped.inc({ reason: 'backpressure' });
        this.dropLog.hit();
        readingsDropped.hit();
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
    this.commands = createCommandWorker(config, {
      client: this.client,
      keys: this.keys,
      sampler: this.sampler,
      schema: agentSchema,
      logger,
      registry: this.registry,
      clock: this.clock,
    });
  }

  get logger(): Logger {
    return this.deps.logger;
  }

  /** Waits up to redis.connectTimeout for Redis, then starts sampling (either way) and the command worker. */
  async start(): Promise<void> {
    const target = describeTarget(this.config);
    if (this.config['metrics.port'] > 0) {
      this.metricsServer = await serveMetrics(
        this.registry,
        this.config['metrics.port'],
        this.config['metrics.host'],
        () => this.health.report(),
      );
      this.logger.info({ port: this.metricsServer.port }, 'metrics endpoint listening');
    }
    // Wait (bounded) for Redis before the first sample: a connection still being set up
    // is not an outage, so the first readings go out live and in order, not via the journal.
    try {
      await waitReady(this.client, target, this.config['redis.connectTimeout']);
      this.logger.info({ redis: target }, 'connected to Redis');
    } catch (err) {
      this.logger.error(
        { redis: target },
        `${(err as Error).message}; sampling goes on and appends are retried`,
      );
    }
    this.sampler.start();
    await this.commands?.start();
    this.forward?.start();
    this.logger.info(
      {
        deviceId: this.telemetry.deviceId,
        redis: target,
        sensors: this.sampler.types,
        seq: this.sequence.current,
      },
      'agent started',
    );
  }

  /**
   * Graceful stop: stop sampling, flush for up to agent.shutdownTimeout, persist the sequence.
   * Every entry taken is then acknowledged by Redis, in the journal (batches still in flight
   * as uncertain: Redis may have executed them), or, without a journal, counted as dropped.
   */
  async stop(): Promise<{ unsent: number }> {
    this.sampler.stop();
    await this.commands?.stop(this.config['agent.shutdownTimeout']);
    let left = await this.producer.close(this.config['agent.shutdownTimeout']);
    // Taken now, before the journal closes and the connection goes: a batch that failed after
    // that would find no journal, and a closed producer does not retry.
    const inFlight = this.producer.abandonInFlight();
    if (this.forward) {
      const { unsent } = await this.forward.stop(left, inFlight, this.config['agent.shutdownTimeout']);
      left = [];
      this.logger.info({ journalUnsent: unsent, inFlightJournaled: inFlight.length }, 'journal closed');
    } else left = [...inFlight, ...left];
    this.sequence.close();
    await this.metricsServer?.close();
    this.client.disconnect();
    this.dropLog.end();
    if (left.length > 0) {
      this.dropped.inc({ reason: 'shutdown' }, left.length);
      this.logger.warn(
        { unsent: left.length, inFlight: inFlight.length },
        'stopped with entries not acknowledged by Redis (no journal: dropped; those in flight may be in Redis)',
      );
    }
    this.logger.info({ seq: this.sequence.current, ...this.producer.totals }, 'agent stopped');
    return { unsent: left.length };
  }
}
