/**
 * A simulated Sparkplug B edge node (Eclipse Sparkplug 3.0): it connects with
 * an NDEATH will carrying its bdSeq, publishes NBIRTH (bdSeq, seq 0, every
 * node metric with its alias), a DBIRTH per device, then DDATA by alias only;
 * it answers `Node Control/Rebirth` (NCMD) with a new NBIRTH and DBIRTHs, and
 * takes DCMD/NCMD metrics (counted in `commands`). The client id is the
 * gateway's device id of the node, `<group>:<node>`, so broker mode's rule (a
 * device publishes only as itself) holds.
 *
 * Tests drive it by hand (`data`, `raw`, `seq` to make gaps); the simulator
 * runs it on a period.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Clock } from '#shared/clock.js';
import type { Logger } from '#shared/log.js';
import {
  DataType,
  decodeSparkplug,
  encodeSparkplug,
  type MetricInput,
  type SparkplugMetric,
} from '#shared/sparkplug/codec.js';
import { deviceTopic, nodeTopic, parseTopic } from '#shared/sparkplug/topic.js';
import type { KindStats } from './device.js';

export interface SparkplugNodeOptions {
  group: string;
  node: string;
  devices: readonly string[];
  url: string;
  /** Metrics per device (aliases 1.. per node); DDATA carries all of them. */
  metricsPerDevice: number;
  /** 0 = only by hand (tests); else a DDATA per device every period. */
  periodMs: number;
  /** bdSeq of the first connection (tests start a node "after a previous life"). */
  bdSeq?: number;
  random?: () => number;
  /** MQTT protocol version (3.1.1 by default: the gateway's own broker speaks no other). */
  protocolVersion?: 4 | 5;
}

export class SparkplugNode {
  private client: MqttClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** seq of the next message (0..255). */
  seq = 0;
  bdSeq: number;
  /** Rebirth requests received. */
  rebirths = 0;
  /** NCMD/DCMD metrics received, other than rebirth: [topic, metric]. */
  readonly commands: Array<[string, SparkplugMetric]> = [];
  private up = false;

  constructor(
    readonly options: SparkplugNodeOptions,
    readonly stats: KindStats,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.bdSeq = options.bdSeq ?? 0;
  }

  get nodeId(): string {
    return `${this.options.group}:${this.options.node}`;
  }

  deviceId(device: string): string {
    return `${this.nodeId}:${device}`;
  }

  /** Alias of metric `m` of the device at `index`: unique across the node [tck-id-payloads-alias-uniqueness]. */
  alias(index: number, m: number): number {
    return 100 + index * this.options.metricsPerDevice + m;
  }

  metricName(m: number): string {
    return `Sensors/m${m}`;
  }

  private setUp(up: boolean): void {
    if (up !== this.up) this.stats.connected += up ? 1 : -1;
    this.up = up;
  }

  /** Connects and births; resolves once NBIRTH and DBIRTHs are acknowledged. */
  async start(): Promise<void> {
    const { group, node } = this.options;
    const client = mqtt.connect(this.options.url, {
      clientId: this.nodeId,
      protocolVersion: this.options.protocolVersion ?? 4,
      clean: true,
      reconnectPeriod: 1000,
      will: { topic: nodeTopic(group, 'NDEATH', node), payload: this.deathPayload(), qos: 1, retain: false },
    });
    this.client = client;
    client.on('message', (topic, payload) => this.onCommand(topic, payload));
    client.on('close', () => this.setUp(false));
    client.on('error', (err) => {
      this.stats.errors++;
      this.logger.debug({ node: this.nodeId, error: err.message }, 'sparkplug node error');
    });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    this.setUp(true);
    await client.subscribeAsync({
      [nodeTopic(group, 'NCMD', node)]: { qos: 0 },
      [deviceTopic(group, 'DCMD', node, '+')]: { qos: 0 },
    });
    await this.birth();
    if (this.options.periodMs > 0)
      this.timer = this.clock.setInterval(() => {
        for (const d of this.options.devices) void this.data(d).catch(() => {});
      }, this.options.periodMs);
  }

  private deathPayload(): Buffer {
    return encodeSparkplug({
      timestamp: this.clock.now(),
      metrics: [{ name: 'bdSeq', datatype: DataType.Int64, value: this.bdSeq }],
    });
  }

  private nextSeq(): number {
    const s = this.seq;
    this.seq = (this.seq + 1) & 0xff;
    return s;
  }

  private value(m: number): number {
    return Math.round((20 + m + (this.options.random?.() ?? 0.5)) * 100) / 100;
  }

  /** NBIRTH (seq 0) and a DBIRTH for every device, all metrics with name and alias. */
  async birth(): Promise<void> {
    const { group, node, devices } = this.options;
    this.seq = 0;
    const now = this.clock.now();
    await this.raw(
      nodeTopic(group, 'NBIRTH', node),
      encodeSparkplug({
        timestamp: now,
        seq: this.nextSeq(),
        metrics: [
          { name: 'bdSeq', datatype: DataType.Int64, value: this.bdSeq },
          { name: 'Node Control/Rebirth', alias: 1, datatype: DataType.Boolean, value: false },
          { name: 'Properties/Uptime', alias: 2, datatype: DataType.UInt64, value: 0 },
        ],
      }),
    );
    for (const [i, d] of devices.entries()) {
      const metrics: MetricInput[] = [];
      for (let m = 0; m < this.options.metricsPerDevice; m++)
        metrics.push({
          name: this.metricName(m),
          alias: this.alias(i, m),
          datatype: DataType.Double,
          value: this.value(m),
        });
      await this.raw(
        deviceTopic(group, 'DBIRTH', node, d),
        encodeSparkplug({ timestamp: now, seq: this.nextSeq(), metrics }),
      );
    }
  }

  /** The payload of a DDATA of a device: every metric by alias only, with the next seq. */
  dataPayload(device: string, now = this.clock.now()): Buffer {
    const i = this.options.devices.indexOf(device);
    const metrics: MetricInput[] = [];
    for (let m = 0; m < this.options.metricsPerDevice; m++)
      metrics.push({
        alias: this.alias(i, m),
        timestamp: now,
        datatype: DataType.Double,
        value: this.value(m),
      });
    return encodeSparkplug({ timestamp: now, seq: this.nextSeq(), metrics });
  }

  /** A DDATA of a device; resolves once acknowledged. */
  data(device: string): Promise<void> {
    const { group, node } = this.options;
    return this.raw(deviceTopic(group, 'DDATA', node, device), this.dataPayload(device));
  }

  /** Any message at QoS 1 (tests: gaps, garbage, redeliveries); counted in stats. */
  async raw(topic: string, payload: Buffer, opts: { dup?: boolean } = {}): Promise<void> {
    const client = this.client;
    if (!client) throw new TypeError('sparkplug node not started');
    this.stats.sent++;
    try {
      await client.publishAsync(topic, payload, { qos: 1, dup: opts.dup ?? false });
      this.stats.acked++;
    } catch (err) {
      this.stats.errors++;
      throw err;
    }
  }

  private onCommand(topic: string, payload: Buffer): void {
    const t = parseTopic(topic);
    if (!t || t.kind === 'state') return;
    let metrics: SparkplugMetric[];
    try {
      metrics = decodeSparkplug(payload).metrics;
    } catch {
      this.stats.errors++;
      return;
    }
    for (const m of metrics) {
      if (t.type === 'NCMD' && m.name === 'Node Control/Rebirth' && m.value === true) {
        this.rebirths++;
        void this.birth().catch(() => {});
      } else this.commands.push([topic, m]);
    }
  }

  /** A clean stop: NDEATH published by hand (a clean DISCONNECT sends no will), then disconnect. */
  async stop(): Promise<void> {
    if (this.timer) this.clock.clearInterval(this.timer);
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    if (client.connected)
      await client
        .publishAsync(nodeTopic(this.options.group, 'NDEATH', this.options.node), this.deathPayload(), {
          qos: 1,
        })
        .catch(() => {});
    await client.endAsync();
    this.setUp(false);
  }

  /** Drops the connection without DISCONNECT: the broker publishes the NDEATH will. */
  async kill(): Promise<void> {
    if (this.timer) this.clock.clearInterval(this.timer);
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    client.stream.destroy();
    await client.endAsync(true);
    this.setUp(false);
  }
}

/** Sparkplug edge nodes of a fleet: group `<prefix>`, nodes n<i>, two devices each, 10 metrics per device. */
export function sparkplugNodes(
  count: number,
  prefix: string,
  url: string,
  periodMs: number,
  random: () => number,
  stats: KindStats,
  clock: Clock,
  logger: Logger,
): SparkplugNode[] {
  const group = prefix.replace(/[^A-Za-z0-9_.-]/g, '-');
  return Array.from(
    { length: count },
    (_, i) =>
      new SparkplugNode(
        { group, node: `n${i}`, devices: ['d0', 'd1'], url, metricsPerDevice: 10, periodMs, random },
        stats,
        clock,
        logger,
      ),
  );
}
