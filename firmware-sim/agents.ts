/**
 * Agent devices: the device library (DeviceTelemetry, the command worker)
 * with simulated sensors, many in one process.
 *
 * Shared: one Redis connection and one TelemetryProducer take the entries of
 * every agent device (a real agent has one each; sharing is what lets
 * thousands run on two cores, and batches across devices are what a gateway
 * does too). Commands: the agent's worker blocks in XREADGROUP on a
 * connection of its own, so only the first `fleet.commandAgents` devices run
 * one (the real CommandWorker, journal and all); the others take no commands.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '#shared/clock.js';
import { opt, type Schema } from '#shared/config/schema.js';
import type { EncodedEnvelope } from '#shared/envelope.js';
import type { Keys } from '#shared/keys.js';
import { type Logger, logSchema } from '#shared/log.js';
import type { Registry } from '#shared/metrics.js';
import { createRedis, type RedisClient } from '#shared/redis/connect.js';
import { createProducerMetrics, TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import {
  builtinHandlers,
  type CommandHandler,
  CommandJournal,
  type CommandMetrics,
  CommandWorker,
  createCommandMetrics,
  DeviceTelemetry,
  HandlerRegistry,
  type TelemetrySink,
  workerOptions,
} from '../device/index.js';
import type { SimConfig } from './config.js';
import { KindStats, SimDevice } from './device.js';
import type { Faults } from './faults.js';
import type { DeviceLedger, SeqLedger } from './ledger.js';
import type { DeviceModel, PayloadText } from './profiles.js';

export interface AgentPoolDeps {
  keys: Keys;
  ledger: SeqLedger;
  faults: Faults;
  logger: Logger;
  registry: Registry;
  clock: Clock;
  /** Where command journals go (one directory per device). */
  dataDir: string;
}

export class AgentDevice extends SimDevice {
  readonly kind = 'agent' as const;
  readonly telemetry: DeviceTelemetry;
  worker: CommandWorker | undefined;
  /** A reading held back by the out-of-order fault, sent after the next one. */
  private held: EncodedEnvelope | undefined;

  constructor(
    id: string,
    model: DeviceModel,
    clockOffset: number,
    firstDue: number,
    random: () => number,
    seqs: DeviceLedger,
    private readonly pool: AgentPool,
  ) {
    super(id, model, clockOffset, firstDue, random, seqs);
    const sink: TelemetrySink = { offer: (e) => this.offer(e) };
    this.telemetry = new DeviceTelemetry(id, { next: () => seqs.nextSeq() }, sink, (e) => pool.overflow(e));
  }

  protected publish(type: string, payload: PayloadText, time: number): void {
    this.telemetry.publishText(type, payload, time);
  }

  private offer(entry: EncodedEnvelope): boolean {
    const faults = this.pool.faults;
    if (this.held) {
      const earlier = this.held;
      this.held = undefined;
      const ok = this.pool.offer(entry);
      if (!this.pool.offer(earlier)) this.pool.overflow(earlier);
      return ok;
    }
    if (faults.holdBack()) {
      this.held = entry;
      return true;
    }
    const ok = this.pool.offer(entry);
    if (ok && faults.duplicate()) this.pool.offer(entry);
    return ok;
  }

  /** Sends what the out-of-order fault still holds (at stop). */
  release(): void {
    const h = this.held;
    this.held = undefined;
    if (h && !this.pool.offer(h)) this.pool.overflow(h);
  }

  /** A crash loses what only RAM held: the held-back reading. */
  loseRam(): void {
    if (this.held) this.pool.overflow(this.held);
    this.held = undefined;
  }
}

export class AgentPool {
  readonly client: RedisClient;
  readonly producer: TelemetryProducer;
  readonly devices: AgentDevice[] = [];
  readonly stats = new KindStats();
  private readonly commandMetrics: CommandMetrics;
  private readonly schema: Schema;

  constructor(
    readonly config: SimConfig,
    private readonly deps: AgentPoolDeps,
  ) {
    this.client = createRedis(config, { connectionName: 'firmware-sim:agents' });
    this.client.on('error', () => {
      // Outages surface through failed batches (the producer's episode log) and the errors counter.
    });
    this.producer = new TelemetryProducer(this.client, deps.keys, producerOptions(config), {
      logger: deps.logger,
      metrics: createProducerMetrics(deps.registry),
      clock: deps.clock,
      hooks: {
        onAcked: (entries) => {
          this.stats.acked += entries.length;
          for (const e of entries) deps.ledger.acked(e.deviceId, e.seq);
        },
        onFailed: () => {
          this.stats.errors++;
          return false; // the producer keeps the batch and retries (idempotent: no duplicates)
        },
      },
    });
    this.commandMetrics = createCommandMetrics(deps.registry);
    // set-interval validates against a schema, as in the agent: one interval option per signal type.
    this.schema = { ...logSchema };
  }

  get ledger(): SeqLedger {
    return this.deps.ledger;
  }

  get faults(): Faults {
    return this.deps.faults;
  }

  add(
    id: string,
    model: DeviceModel,
    clockOffset: number,
    firstDue: number,
    random: () => number,
    seqs: DeviceLedger,
  ): AgentDevice {
    const d = new AgentDevice(id, model, clockOffset, firstDue, random, seqs, this);
    for (const s of model.signals) {
      (this.schema as Record<string, unknown>)[`sensors.${s.type}.interval`] = opt.duration(
        s.intervalMs,
        `interval of ${s.type}`,
        { min: 1 },
      );
    }
    this.devices.push(d);
    return d;
  }

  offer(entry: EncodedEnvelope): boolean {
    const ok = this.producer.offer(entry);
    if (ok) this.stats.sent++;
    return ok;
  }

  /** The producer refused an entry (buffer full): the reading is dropped, and counted. */
  overflow(entry: EncodedEnvelope): void {
    this.stats.dropped++;
    this.deps.ledger.dropped(entry.deviceId, entry.seq);
  }

  get connected(): number {
    if (this.client.status !== 'ready') return 0;
    return this.devices.filter((d) => d.running).length;
  }

  async startWorker(d: AgentDevice): Promise<void> {
    const config = {
      ...this.config,
      'device.id': d.id,
      'device.tags': ['sim', 'agent'],
    };
    const timeout = config['commands.handlerTimeout'];
    const handlers = new HandlerRegistry();
    const control = {
      sampler: d,
      logger: this.deps.logger,
      schema: this.schema,
      reboot: () => {
        d.running = false;
        d.running = true;
      },
    };
    for (const h of builtinHandlers(control, timeout)) handlers.register(this.slowable(h));
    const dir = join(this.deps.dataDir, d.id);
    mkdirSync(dir, { recursive: true });
    const journal = CommandJournal.open(join(dir, 'commands.journal'), this.deps.clock.now());
    d.worker = new CommandWorker(this.client, this.deps.keys, handlers, journal, workerOptions(config), {
      logger: this.deps.logger,
      metrics: this.commandMetrics,
      clock: this.deps.clock,
    });
    await d.worker.start();
  }

  /** Wraps a handler with the slow-handler fault and the command counters. */
  private slowable(h: CommandHandler): CommandHandler {
    return {
      ...h,
      run: async (args, ctx) => {
        this.stats.commandsReceived++;
        const stall = this.faults.commandStall();
        if (stall > 0) await abortableSleep(stall, ctx.signal);
        const out = await h.run(args, ctx);
        this.stats.commandsAnswered++;
        return out;
      },
    };
  }

  /** Crash: sampling stops, RAM is lost, the command worker dies; it all comes back after `downtimeMs`. */
  async crash(d: AgentDevice, downtimeMs: number, stopping: () => boolean): Promise<void> {
    if (!d.running) return;
    d.running = false;
    d.loseRam();
    this.stats.crashes++;
    const worker = d.worker;
    d.worker = undefined;
    await worker?.stop(0);
    await new Promise((r) => setTimeout(r, downtimeMs));
    if (stopping()) return;
    if (worker) await this.startWorker(d);
    d.running = true;
  }

  /** Storm: the shared Redis connection drops and reconnects; the producer retries its batches. */
  storm(): void {
    this.stats.disconnects++;
    this.client.disconnect(true);
  }

  async stop(timeoutMs: number): Promise<number> {
    for (const d of this.devices) {
      d.running = false;
      d.release();
    }
    await Promise.all(this.devices.map((d) => d.worker?.stop(timeoutMs)));
    const left = await this.producer.close(timeoutMs);
    this.client.disconnect();
    return left.length;
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}
