/**
 * The gateway process: MQTT in (broker or bridge mode) -> ingestor -> the
 * shared batched producer -> partitioned telemetry streams; command delivery
 * back to devices; and the services that run beside them (retention,
 * projection) with their start/stop.
 */
import { hostname } from 'node:os';
import { type Clock, systemClock } from '#shared/clock.js';
import { HEALTHY, HealthBook } from '#shared/health.js';
import { Keys } from '#shared/keys.js';
import type { Logger } from '#shared/log.js';
import { createRegistry, Gauge, type MetricsServer, type Registry, serveMetrics } from '#shared/metrics.js';
import { createRedis, describeTarget, type RedisClient, waitReady } from '#shared/redis/connect.js';
import { createProducerMetrics, TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import { loadCredentials, TopicAcl } from './auth.js';
import { GatewayBridge } from './bridge.js';
import { type BrokerPorts, GatewayBroker } from './broker.js';
import { CommandDelivery } from './commands/index.js';
import type { GatewayConfig } from './config.js';
import { dashboardOptions } from './dashboard/options.js';
import { DashboardService } from './dashboard/server.js';
import { createIngestMetrics, Ingestor, type Templates } from './ingest.js';
import { GatewayLease } from './lease.js';
import { TopicTemplate } from './mapping.js';
import { MappingSet } from './mappings/index.js';
import { RecordWriter } from './records.js';
import { GatewaySequencer } from './sequencer.js';
import type { DeviceReach, GatewayContext, GatewayService, ServiceFactory } from './services.js';
import { SparkplugCommands } from './sparkplug/commands.js';
import { SparkplugHandler } from './sparkplug/handler.js';
import { sparkplugOptions } from './sparkplug/options.js';
import { SparkplugReach } from './sparkplug/reach.js';

/** Bridge mode: the upstream broker knows who is online, the gateway does not. */
const NO_REACH: DeviceReach = { online: () => undefined, onChange: () => {}, onAck: () => {} };

export interface GatewayDeps {
  logger: Logger;
  clock?: Clock;
  registry?: Registry;
  /**
   * Services to run in this process. The CLI passes retention and projection
   * (gateway/retention, gateway/projection) and command delivery here.
   */
  services?: readonly ServiceFactory[];
}

export class Gateway {
  readonly keys: Keys;
  readonly client: RedisClient;
  readonly producer: TelemetryProducer;
  readonly ingestor: Ingestor;
  readonly registry: Registry;
  readonly gatewayId: string;
  readonly templates: Templates;
  readonly records: RecordWriter;
  readonly sequencer: GatewaySequencer;
  /** What /healthz reports: the gateway's own conditions and every service's (shared/health.ts). */
  readonly health: HealthBook;
  broker: GatewayBroker | undefined;
  bridge: GatewayBridge | undefined;
  /** Sparkplug B edge nodes (sparkplug.enabled; docs/sparkplug.md). */
  readonly sparkplug: SparkplugHandler | undefined;
  /** The web dashboard (dashboard.port >= 0); its URL is known after start. */
  readonly dashboard: DashboardService | undefined;
  private readonly services: GatewayService[] = [];
  private metricsServer: MetricsServer | undefined;
  private lastSeenTimer: NodeJS.Timeout | undefined;
  private readonly clock: Clock;

  constructor(
    readonly config: GatewayConfig,
    private readonly deps: GatewayDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.gatewayId = config['gateway.id'] || `${hostname()}-${process.pid}`;
    this.keys = new Keys(config['redis.keyPrefix'], config['redis.partitions']);
    this.registry = deps.registry ?? createRegistry({ gateway: this.gatewayId });
    this.health = new HealthBook(config['health.lossWindow'], this.clock);
    this.templates = {
      telemetry: new TopicTemplate(config['topics.telemetry'], 'topics.telemetry'),
      commands: new TopicTemplate(config['topics.commands'], 'topics.commands'),
      results: new TopicTemplate(config['topics.results'], 'topics.results'),
      status: new TopicTemplate(config['topics.status'], 'topics.status'),
    };
    const logger = deps.logger;
    this.client = createRedis(config, { connectionName: `gateway:${this.gatewayId}` });
    this.client.on('error', () => {
      // Connection errors surface through failed batches and the outage episode log.
    });
    this.records = new RecordWriter(
      this.client,
      this.keys,
      this.gatewayId,
      {
        rejectedMaxLen: config['gateway.rejectedMaxLen'],
        presenceMaxLen: config['gateway.presenceMaxLen'],
        maxPendingEvents: config['gateway.maxPendingEvents'],
      },
      this.clock,
      logger,
      this.registry,
      this.health,
    );
    const metrics = createIngestMetrics(this.registry);
    // Vendor mappings: a bad file stops the start here, naming the file and field.
    const mappings = config.mapping.length > 0 ? MappingSet.load(config.mapping, this.registry) : undefined;
    // Sparkplug B: its rebirth requests go out the way commands do (set up below, once the MQTT side exists).
    const sp = sparkplugOptions(config);
    this.sparkplug = sp.enabled
      ? new SparkplugHandler(sp, {
          publish: (topic, payload) => this.publishToDevice(topic, payload, 0),
          clock: this.clock,
          logger,
          registry: this.registry,
        })
      : undefined;
    let ingestor: Ingestor | undefined;
    this.producer = new TelemetryProducer(this.client, this.keys, producerOptions(config), {
      logger,
      metrics: createProducerMetrics(this.registry),
      clock: this.clock,
      health: this.health,
      hooks: { onAcked: (entries, outcome) => ingestor?.onAcked(entries, outcome) },
    });
    this.sequencer = new GatewaySequencer(
      this.client,
      this.keys,
      config['gateway.sequenceBlock'],
      this.clock,
      logger,
    );
    ingestor = new Ingestor(
      { maxPayloadBytes: config['gateway.maxPayloadBytes'], defaultType: config['topics.defaultType'] },
      {
        producer: this.producer,
        sequencer: this.sequencer,
        records: this.records,
        templates: this.templates,
        acl: new TopicAcl(config['topics.telemetry']),
        metrics,
        clock: this.clock,
        logger,
        mappings,
        protocol: this.sparkplug,
      },
    );
    this.ingestor = ingestor;
    const producer = this.producer;
    // Refusing to read is refusing data: devices are slowed, not lost, but the gateway says so.
    this.health.state('back-pressure', () =>
      producer.isBackpressured
        ? {
            message:
              'the producer buffer is full (producer.maxBufferedEntries): the gateway reads nothing more from devices until Redis takes the backlog',
            count: producer.held,
          }
        : undefined,
    );
    const pending = ingestor;
    new Gauge({
      name: 'gateway_pending_publishes',
      help: 'Publishes received and not yet acknowledged (waiting for their append)',
      registers: [this.registry],
      collect() {
        this.set(pending.pending);
      },
    });
    if (config['gateway.mode'] === 'broker') {
      const file = config['auth.credentialsFile'];
      this.broker = new GatewayBroker(config, {
        ingestor,
        records: this.records,
        acl: new TopicAcl(config['topics.telemetry']),
        credentials: file ? loadCredentials(file) : undefined,
        metrics,
        logger,
        mayAlsoSubscribe: this.sparkplug
          ? (identity, filter) => this.sparkplug?.allowsSubscribe(identity, filter) ?? false
          : undefined,
      });
    } else {
      this.bridge = new GatewayBridge(
        config,
        this.gatewayId,
        this.templates,
        ingestor,
        logger,
        () => this.producer.sendNow(),
        mappings?.filters() ?? [],
        this.sparkplug?.filters() ?? [],
      );
    }
    const ctx = this.context();
    let reach: DeviceReach = this.broker ?? NO_REACH;
    if (this.sparkplug) {
      const sparkplugReach = new SparkplugReach(reach);
      this.sparkplug.onPresence = (deviceId, online) => sparkplugReach.set(deviceId, online);
      reach = sparkplugReach;
    }
    this.services.push(
      new GatewayLease(ctx, this.bridge, {
        ttlMs: config['gateway.leaseTtl'],
        adoptIdleMs: config['gateway.adoptIdle'],
      }),
    );
    if (config['commands.enabled']) {
      this.services.push(
        new CommandDelivery(ctx, reach, {
          pollIntervalMs: config['commands.pollInterval'],
          doorbellPollIntervalMs: config['commands.doorbellPollInterval'],
          sweepIntervalMs: config['commands.sweepInterval'],
          agentResultGraceMs: config['commands.agentResultGrace'],
          retentionMs: config['commands.ledgerRetention'],
          doorbell: config['commands.doorbell'],
          resultsMaxLen: config['commands.resultsMaxLen'],
        }),
      );
    }
    // Retention (gateway/retention) and projection (gateway/projection) come in as factories here.
    for (const factory of deps.services ?? []) this.services.push(factory(ctx));
    // Last, so it is stopped first and its page never reads from a half-stopped gateway.
    if (config['dashboard.port'] >= 0) {
      this.dashboard = new DashboardService(ctx, dashboardOptions(config));
      this.services.push(this.dashboard);
    }
    for (const s of this.services) if (s.health) this.health.include(() => s.health?.() ?? HEALTHY);
  }

  get logger(): Logger {
    return this.deps.logger;
  }

  private context(): GatewayContext {
    return {
      config: this.config,
      gatewayId: this.gatewayId,
      client: this.client,
      keys: this.keys,
      registry: this.registry,
      logger: this.deps.logger,
      clock: this.clock,
      templates: this.templates,
      ingestor: this.ingestor,
      records: this.records,
      publishToDevice: (topic, payload, qos, ttlMs) => this.publishToDevice(topic, payload, qos, ttlMs),
      commandRoute: this.sparkplug
        ? new SparkplugCommands(this.sparkplug.sessions, () => this.clock.now())
        : undefined,
    };
  }

  private publishToDevice(topic: string, payload: Buffer, qos: 0 | 1, ttlMs?: number): Promise<void> {
    if (this.broker) return this.broker.publish(topic, payload, qos);
    if (this.bridge) return this.bridge.publish(topic, payload, qos, ttlMs);
    return Promise.reject(new TypeError('gateway has no MQTT side'));
  }

  /** Connects to Redis, opens the MQTT side, then starts the services. Resolves with the broker's ports. */
  async start(): Promise<BrokerPorts | undefined> {
    const target = describeTarget(this.config);
    await waitReady(this.client, target, this.config['redis.connectTimeout']);
    if (this.config['metrics.port'] > 0) {
      this.metricsServer = await serveMetrics(
        this.registry,
        this.config['metrics.port'],
        this.config['metrics.host'],
        () => this.health.report(),
      );
    }
    let ports: BrokerPorts | undefined;
    if (this.broker) ports = await this.broker.listen();
    if (this.bridge) await this.bridge.start();
    for (const s of this.services) {
      await s.start();
      this.logger.info({ service: s.name }, 'service started');
    }
    // Last-seen times of publishing devices, once a second in one HSET (connects and disconnects write at once).
    this.lastSeenTimer = this.clock.setInterval(() => {
      if (this.ingestor.seen.size === 0) return;
      const seen = new Map(this.ingestor.seen);
      this.ingestor.seen.clear();
      this.records.touch(seen).catch(() => {
        // Best effort: a later touch or presence event updates it.
      });
    }, 1000);
    this.logger.info(
      { gatewayId: this.gatewayId, mode: this.config['gateway.mode'], redis: target, ports },
      'gateway started',
    );
    return ports;
  }

  /**
   * Graceful stop: services; then the intake (no new connections, and a
   * publish arriving from here on is dropped unacknowledged); then a flush of
   * what is held, whose PUBACKs go out on the still-open connections; only
   * then the producer is closed, late callbacks are cut off (a sequence
   * reservation answered now drops its entry, it does not offer it to a
   * closed producer), and the MQTT side and Redis are closed.
   */
  async stop(): Promise<{ unsent: number }> {
    for (const s of [...this.services].reverse()) {
      await s
        .stop()
        .catch((err: Error) =>
          this.logger.warn({ service: s.name, error: err.message }, 'service stop failed'),
        );
    }
    if (this.lastSeenTimer) this.clock.clearInterval(this.lastSeenTimer);
    this.ingestor.stopIntake();
    this.broker?.stopAccepting();
    const left = await this.producer.close(this.config['gateway.shutdownTimeout']);
    this.ingestor.detach();
    this.sequencer.close();
    this.records.close();
    // The last PUBACKs were written corked (mqtt-packet writeToStream uncorks on process.nextTick):
    // let them reach the sockets before the connections are destroyed.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await this.broker
      ?.close()
      .catch((err: Error) => this.logger.warn({ error: err.message }, 'broker close'));
    await this.bridge
      ?.close()
      .catch((err: Error) => this.logger.warn({ error: err.message }, 'bridge close'));
    await this.metricsServer?.close();
    this.client.disconnect();
    this.logger.info({ unsent: left.length, ...this.producer.totals }, 'gateway stopped');
    return { unsent: left.length };
  }
}
