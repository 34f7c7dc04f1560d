/**
 * Bridge mode: the gateway is a client of an existing broker (Mosquitto, EMQX,
 * HiveMQ, NATS), subscribed through an MQTT shared subscription
 * (`$share/<group>/<filter>`) so several gateways, and several connections of
 * one gateway, split the load.
 *
 * Acknowledgement after append: a QoS 1 message's PUBACK is held until its
 * entry is in Redis, in arrival order, while the connection goes on reading
 * (gateway/bridge-acks.ts): up to `bridge.inflight` messages per connection
 * are in flight at once (the broker's window, told as Receive Maximum over
 * v5), and `bridge.connections` connections in the same shared subscription
 * share the producer's batches. Batches go out as the producer's do (full, or
 * after `producer.lingerMs`, 1 ms), and at once when every connection's window
 * is full: then nothing more can arrive until PUBACKs go out, so lingering
 * would be pure latency. (Sending what each read of the sockets brought at
 * once, as before, made batches of a few entries per partition: in the bridge
 * leg of bench gateway, 17.4k/17.8k entries/s with 27k/22k script calls, and
 * 18.8k/18.9k entries/s with 19.5k/20k calls this way.)
 *
 * Sessions persist (clean: false, stable client ids; over MQTT v5 also a
 * session expiry interval, without which a v5 session ends with its
 * connection [MQTT-3.1.2-23]): messages that arrive while a gateway is down
 * wait at the broker, and a message whose PUBACK was never sent is delivered
 * again after a crash.
 *
 * Commands go out over MQTT v5 (`bridge.protocolVersion`, default 5) with a
 * Message Expiry Interval that ends at the command's deadline: the broker
 * must not deliver it once that has passed [MQTT-3.3.2-5], to an offline
 * persistent session neither. The interval is whole seconds, and brokers
 * count it in whole seconds of their clock (mosquitto 2.0 delivers a message
 * up to a second past its interval: test/integration/gateway-bridge-commands),
 * so the gateway rounds the time left down and takes one more second off: the
 * broker drops a command up to two seconds early, never late. A command with
 * less than MIN_EXPIRY_MS left is not published. Over 3.1.1 there is no expiry:
 * the broker may deliver a command late, and firmware must check `deadline`.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { FleetError } from '#shared/errors.js';
import type { Logger } from '#shared/log.js';
import { mqttClientLog } from '#shared/mqtt-log.js';
import { HeldPubacks } from './bridge-acks.js';
import type { GatewayConfig } from './config.js';
import type { Ingestor, Templates } from './ingest.js';

/** Session Expiry Interval of the bridge's v5 sessions: never ends, as a 3.1.1 persistent session [MQTT-3.1.2-23]. */
const SESSION_NEVER_EXPIRES = 0xffffffff;

/** Taken off the time left: the broker's whole-second clock may keep a message up to this much past its interval. */
const BROKER_CLOCK_SLACK_S = 1;
/** A command with less than this left (ms) is not published: its interval would be 0, which means "none". */
export const MIN_EXPIRY_MS = (BROKER_CLOCK_SLACK_S + 1) * 1000;

/** No bridge connection is up; the caller retries (commands: until the deadline). */
export class BridgeOfflineError extends FleetError {
  readonly code = 'BRIDGE_OFFLINE';
  constructor(readonly url: string) {
    super(
      `no connection to the upstream broker ${url} is up; retried while it reconnects (check bridge.url)`,
    );
  }
}

/** Too little time is left to give a message an expiry interval of at least a second. */
export class ExpiresTooSoonError extends FleetError {
  readonly code = 'EXPIRES_TOO_SOON';
  constructor(
    readonly topic: string,
    readonly ttlMs: number,
  ) {
    super(`not published to ${topic}: ${ttlMs} ms left, under the ${MIN_EXPIRY_MS} ms an expiry needs`);
  }
}

/** Client id of a gateway's bridge connection `index`: stable, so its session survives restarts. */
export function bridgeClientId(config: GatewayConfig, gatewayId: string, index: number): string {
  return `${config['bridge.clientIdPrefix']}-${gatewayId}-${index}`;
}

export class GatewayBridge {
  private readonly clients: MqttClient[] = [];
  /** Messages handed to the ingestor and not yet appended. */
  private busy = 0;
  /** The PUBACK windows of the live connections: when all are full, what is held is sent at once. */
  private readonly windows = new Set<HeldPubacks>();

  constructor(
    private readonly config: GatewayConfig,
    private readonly gatewayId: string,
    private readonly templates: Templates,
    private readonly ingestor: Ingestor,
    private readonly logger: Logger,
    /** Asks the producer to send what it holds now (see the file comment). */
    private readonly sendNow: () => void = () => {},
    /** More filters to subscribe to in the same shared subscription (vendor mappings, gateway/mappings). */
    private readonly extraFilters: readonly string[] = [],
    /**
     * Filters subscribed without a shared subscription, on connection 0 only
     * (Sparkplug B, gateway/sparkplug): one stateful reader per edge node, so
     * its messages are taken in the order it sent them.
     */
    private readonly orderedFilters: readonly string[] = [],
  ) {}

  /** Shared-subscription filters this gateway subscribes to. */
  filters(): string[] {
    const group = this.config['bridge.group'];
    const t = this.templates;
    return [t.telemetry.filter(), t.status.filter(), t.results.filter(), ...this.extraFilters].map(
      (f) => `$share/${group}/${f}`,
    );
  }

  async start(): Promise<void> {
    const subscriptions = Object.fromEntries(this.filters().map((f) => [f, { qos: 1 as const }]));
    const ordered = Object.fromEntries(this.orderedFilters.map((f) => [f, { qos: 1 as const }]));
    const connects: Promise<void>[] = [];
    for (let i = 0; i < this.config['bridge.connections']; i++) {
      const client = this.connect(bridgeClientId(this.config, this.gatewayId, i), i);
      this.clients.push(client);
      connects.push(
        new Promise<void>((resolve) => {
          client.once('connect', () => {
            // A resumed session keeps its subscriptions; subscribing again is harmless and covers a lost one.
            client.subscribe(i === 0 ? { ...subscriptions, ...ordered } : subscriptions, (err) => {
              if (err) this.logger.error({ connection: i, error: err.message }, 'bridge subscribe failed');
              resolve();
            });
          });
        }),
      );
    }
    await Promise.all(connects);
    this.logger.info(
      {
        url: this.config['bridge.url'],
        connections: this.clients.length,
        filters: this.filters(),
        ordered: this.orderedFilters,
      },
      'bridge subscribed',
    );
  }

  /**
   * Takes over the sessions of a gateway that is gone (its lease expired,
   * gateway/lease.ts): the broker keeps routing its share of the shared
   * subscription to them and holds what it had in flight there. Each session
   * is resumed under its client id, unsubscribed (no new messages go to it),
   * drained until `idleMs` pass without a message, every message acknowledged
   * after its append as usual, and ended (session expiry 0), so the broker
   * gives its share to the gateways that are up. Resolves with the messages taken.
   */
  async adoptSessions(goneId: string, connections: number, idleMs: number): Promise<number> {
    let taken = 0;
    let last = Date.now();
    const clients = Array.from({ length: connections }, (_, i) => {
      const c = this.connect(bridgeClientId(this.config, goneId, i), i, { reconnectPeriod: 0 }, () => {
        taken++;
        last = Date.now();
      });
      return c;
    });
    try {
      await Promise.all(
        clients.map(
          (c) =>
            new Promise<void>((resolve, reject) => {
              c.once('connect', () => {
                c.unsubscribe(this.filters(), () => resolve());
              });
              c.once('error', reject);
              c.once('close', () => reject(new BridgeOfflineError(this.config['bridge.url'])));
            }),
        ),
      );
      while (Date.now() - last < idleMs || clients.some((c) => c.connected && this.busy > 0)) {
        await new Promise((r) => setTimeout(r, Math.min(100, idleMs)));
        if (clients.every((c) => !c.connected)) break; // taken back by its owner
      }
    } finally {
      // Session expiry 0 at DISCONNECT ends the session at the broker [MQTT-3.14.2-2 allows it when it was not 0].
      await Promise.all(
        clients.map((c) =>
          c.connected ? c.endAsync(false, { properties: { sessionExpiryInterval: 0 } }) : c.endAsync(true),
        ),
      );
    }
    return taken;
  }

  /** One connection with a persistent session, its messages acknowledged after their append. */
  private connect(
    clientId: string,
    index: number,
    extra: IClientOptions = {},
    onMessage: () => void = () => {},
  ): MqttClient {
    const c = this.config;
    const v5 = c['bridge.protocolVersion'] === '5';
    const options: IClientOptions = {
      clientId,
      // A persistent session [MQTT-3.1.2-4]: the broker keeps subscriptions and unacknowledged messages.
      clean: false,
      protocolVersion: v5 ? 5 : 4,
      ...(v5
        ? {
            properties: {
              sessionExpiryInterval: SESSION_NEVER_EXPIRES,
              receiveMaximum: c['bridge.inflight'],
            },
          }
        : {}),
      username: c['bridge.username'],
      password: c['bridge.password'],
      reconnectPeriod: 1000,
      connectTimeout: c['redis.connectTimeout'],
      resubscribe: true,
      log: mqttClientLog(),
      ...extra,
    };
    const client = mqtt.connect(c['bridge.url'], options);
    const pubacks = new HeldPubacks(client);
    this.windows.add(pubacks);
    client.on('end', () => this.windows.delete(pubacks));
    client.handleMessage = (packet, callback) => {
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      this.busy++;
      onMessage();
      // A broker that sends past our window (3.1.1 has no Receive Maximum) waits for this append before the next.
      const full = pubacks.size >= c['bridge.inflight'];
      const appended = packet.qos > 0 ? pubacks.hold(packet.messageId) : () => {};
      this.ingestor.handle({ topic: packet.topic, payload, identity: undefined }, () => {
        this.busy--;
        appended();
        if (full) callback();
      });
      if (!full) callback();
      if (this.windowsFull()) this.sendNow();
    };
    client.on('error', (err) =>
      this.logger.warn({ connection: index, clientId, error: err.message }, 'bridge connection error'),
    );
    client.on('offline', () =>
      this.logger.warn({ connection: index, clientId }, 'bridge connection offline'),
    );
    return client;
  }

  /** Whether every live connection waits on appends for a full window (see the file comment). */
  private windowsFull(): boolean {
    const limit = this.config['bridge.inflight'];
    for (const w of this.windows) if (w.size < limit) return false;
    return true;
  }

  /**
   * Publishes to devices through the upstream broker (commands), on a
   * connected connection only: one that is down would queue the message and
   * send it after reconnecting, its expiry interval counted from then.
   * `ttlMs`: over v5 the broker drops it undelivered once that has passed.
   */
  async publish(topic: string, payload: Buffer, qos: 0 | 1, ttlMs?: number): Promise<void> {
    if (this.clients.length === 0) throw new TypeError('bridge not started');
    const client = this.clients.find((c) => c.connected);
    if (!client) throw new BridgeOfflineError(this.config['bridge.url']);
    if (ttlMs === undefined || this.config['bridge.protocolVersion'] !== '5') {
      await client.publishAsync(topic, payload, { qos });
      return;
    }
    if (ttlMs < MIN_EXPIRY_MS) throw new ExpiresTooSoonError(topic, ttlMs);
    // Early, never late [MQTT-3.3.2-5], on a broker clock of whole seconds too.
    const messageExpiryInterval = Math.floor(ttlMs / 1000) - BROKER_CLOCK_SLACK_S;
    await client.publishAsync(topic, payload, { qos, properties: { messageExpiryInterval } });
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.endAsync(true)));
    this.clients.length = 0;
  }
}
