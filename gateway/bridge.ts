/**
 * Bridge mode: the gateway is a client of an existing broker (Mosquitto, EMQX,
 * HiveMQ, NATS), subscribed through an MQTT shared subscription
 * (`$share/<group>/<filter>`) so several gateways, and several connections of
 * one gateway, split the load.
 *
 * Acknowledgement after append: MQTT.js sends the PUBACK of a QoS 1 message
 * only when `handleMessage`'s callback runs, and handles a connection's next
 * packet only after that (client.js `work`/`nextTickWork`). The callback runs
 * when the entry is in Redis, so one connection carries one message per
 * append round trip; `bridge.connections` connections in the same shared
 * subscription carry that many at once, and their messages share batches.
 * Once every connected connection waits on an append, nothing more can arrive
 * until one is acknowledged, so the batch is sent at once instead of after
 * the producer's linger time (which would be pure latency per message).
 *
 * Sessions persist (clean: false, stable client ids): messages that arrive
 * while a gateway is down wait at the broker, and a message whose PUBACK was
 * never sent is delivered again after a crash.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from '#shared/log.js';
import type { GatewayConfig } from './config.js';
import type { Ingestor, Templates } from './ingest.js';

export class GatewayBridge {
  private readonly clients: MqttClient[] = [];
  /** Messages handed to the ingestor and not yet acknowledged (at most one per connection). */
  private busy = 0;

  constructor(
    private readonly config: GatewayConfig,
    private readonly gatewayId: string,
    private readonly templates: Templates,
    private readonly ingestor: Ingestor,
    private readonly logger: Logger,
    /** Asks the producer to send what it holds now (see the file comment). */
    private readonly sendNow: () => void = () => {},
  ) {}

  /** Shared-subscription filters this gateway subscribes to. */
  filters(): string[] {
    const group = this.config['bridge.group'];
    const t = this.templates;
    return [t.telemetry.filter(), t.status.filter(), t.results.filter()].map((f) => `$share/${group}/${f}`);
  }

  async start(): Promise<void> {
    const c = this.config;
    const subscriptions = Object.fromEntries(this.filters().map((f) => [f, { qos: 1 as const }]));
    const connects: Promise<void>[] = [];
    for (let i = 0; i < c['bridge.connections']; i++) {
      const options: IClientOptions = {
        clientId: `${c['bridge.clientIdPrefix']}-${this.gatewayId}-${i}`,
        // A persistent session [MQTT-3.1.2-4]: the broker keeps subscriptions and unacknowledged messages.
        clean: false,
        protocolVersion: 4,
        username: c['bridge.username'],
        password: c['bridge.password'],
        reconnectPeriod: 1000,
        connectTimeout: c['redis.connectTimeout'],
        resubscribe: true,
      };
      const client = mqtt.connect(c['bridge.url'], options);
      client.handleMessage = (packet, callback) => {
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        this.busy++;
        this.ingestor.handle({ topic: packet.topic, payload, identity: undefined }, () => {
          this.busy--;
          callback();
        });
        if (this.busy >= this.connectedCount()) this.sendNow();
      };
      client.on('error', (err) =>
        this.logger.warn({ connection: i, error: err.message }, 'bridge connection error'),
      );
      client.on('offline', () => this.logger.warn({ connection: i }, 'bridge connection offline'));
      this.clients.push(client);
      connects.push(
        new Promise<void>((resolve) => {
          client.once('connect', () => {
            // A resumed session keeps its subscriptions; subscribing again is harmless and covers a lost one.
            client.subscribe(subscriptions, (err) => {
              if (err) this.logger.error({ connection: i, error: err.message }, 'bridge subscribe failed');
              resolve();
            });
          });
        }),
      );
    }
    await Promise.all(connects);
    this.logger.info(
      { url: c['bridge.url'], connections: this.clients.length, filters: this.filters() },
      'bridge subscribed',
    );
  }

  private connectedCount(): number {
    let n = 0;
    for (const c of this.clients) if (c.connected) n++;
    return n;
  }

  /** Publishes to devices through the upstream broker (commands). */
  async publish(topic: string, payload: Buffer, qos: 0 | 1): Promise<void> {
    const client = this.clients[0];
    if (!client) throw new TypeError('bridge not started');
    await client.publishAsync(topic, payload, { qos });
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.endAsync(true)));
    this.clients.length = 0;
  }
}
