/**
 * The contracts between the gateway process and what runs inside it: a service
 * (retention, projection, command delivery, dashboard, lease), what it is given
 * (GatewayContext), and how command delivery reaches devices (DeviceReach). They
 * live apart from gateway.ts so that the services and the process that starts
 * them never import each other.
 */
import type { Clock } from '#shared/clock.js';
import type { Keys } from '#shared/keys.js';
import type { Logger } from '#shared/log.js';
import type { Health, Registry } from '#shared/metrics.js';
import type { RedisClient } from '#shared/redis/connect.js';
import type { GatewayConfig } from './config.js';
import type { Ingestor, Templates } from './ingest.js';
import type { RecordWriter } from './records.js';

/**
 * A service that runs inside the gateway process beside MQTT ingestion
 * (retention trimming, state projection, command delivery). The gateway
 * starts them after Redis and MQTT are up and stops them, in reverse order,
 * before it flushes its producer.
 */
export interface GatewayService {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A service that is dropping data reports unhealthy here; /healthz joins every service's answer. */
  health?(): Health;
}

/** What a service factory gets from the gateway: shared connections, keys, metrics, and the way to reach devices. */
export interface GatewayContext {
  readonly config: GatewayConfig;
  readonly gatewayId: string;
  readonly client: RedisClient;
  readonly keys: Keys;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly templates: Templates;
  readonly ingestor: Ingestor;
  readonly records: RecordWriter;
  /**
   * Publishes to a device topic, through the embedded broker or the upstream one. `ttlMs`:
   * bridge mode over MQTT v5 has the upstream broker drop the message undelivered after that.
   */
  publishToDevice(topic: string, payload: Buffer, qos: 0 | 1, ttlMs?: number): Promise<void>;
  /** Devices whose commands take another form than the JSON command topic (Sparkplug B NCMD/DCMD). */
  readonly commandRoute?: CommandRoute;
}

/** A command as a protocol's devices take it: they answer none, so it ends `succeeded` once published. */
export interface RoutedCommand {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
}

/** A protocol whose devices take commands in their own form (gateway/sparkplug/commands.ts). */
export interface CommandRoute {
  /** The command for this device, or undefined when the device is not this protocol's. */
  route(deviceId: string, command: { name: string; args: unknown }): RoutedCommand | undefined;
}

export type ServiceFactory = (ctx: GatewayContext) => GatewayService;

/** Which devices this gateway can reach now (broker mode), and when that changes. */
export interface DeviceReach {
  /** Undefined in bridge mode: the upstream broker decides. */
  online(): ReadonlySet<string> | undefined;
  onChange(listener: (deviceId: string, online: boolean) => void): void;
  /** The device acknowledged (PUBACK) a message on a topic. */
  onAck(listener: (deviceId: string, topic: string, payload: Buffer) => void): void;
}
