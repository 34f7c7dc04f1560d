/**
 * Broker mode: the gateway is the devices' MQTT broker (embedded aedes), on
 * TCP and optionally TLS and WebSocket.
 *
 * Acknowledgement after append: aedes runs `authorizePublish` before it
 * writes the PUBACK of a QoS 1 publish (lib/handlers/publish.js: authorize,
 * then PubAck, then forward), and reads no further packet from a connection
 * until every packet of the current socket read is handled (lib/client.js
 * nextBatch). So the hook hands the publish to the ingestor and calls back
 * only when the entry is in Redis: the PUBACK follows the append, and a slow
 * Redis stops the gateway reading from device sockets.
 *
 * Refused publishes: MQTT 3.1.1 has no negative PUBACK ([MQTT-3.3.5-2]: the
 * server either acknowledges positively or closes the connection). The gateway
 * acknowledges, records the refusal in the rejected stream, counts it, and
 * renames the topic so the publish reaches no subscriber.
 *
 * Routing: after the PUBACK aedes routes every publish to its subscribers
 * (retained store, offline queues of persistent sessions, live subscribers: a
 * topic-trie match for each and a chain of promises). Under the ACL only a
 * device itself may subscribe inside its namespace, so a device's telemetry
 * has a subscriber only when that device subscribed to a matching filter.
 * Publishes that no filter of their device matches (nearly all telemetry: a
 * device subscribes to its commands) skip that routing; the rest, and any
 * retained publish, go through aedes as before.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { ConfigError } from '#shared/errors.js';
import type { Logger } from '#shared/log.js';
import { type TopicAcl, verifyPassword } from './auth.js';
import type { GatewayConfig } from './config.js';
import type { IngestMetrics, Ingestor } from './ingest.js';
import type { RecordWriter } from './records.js';
import type { DeviceReach } from './services.js';
import { filterMatches } from './topic-filter.js';

/** Topic a refused publish is renamed to: outside every device namespace, so no subscriber may receive it. */
export const REFUSED_TOPIC = '$gateway/refused';

export interface BrokerDeps {
  ingestor: Ingestor;
  records: RecordWriter;
  acl: TopicAcl;
  credentials: Map<string, string> | undefined;
  metrics: IngestMetrics;
  logger: Logger;
  /** Subscriptions outside the device's namespace that a protocol allows (a Sparkplug node's NCMD/DCMD). */
  mayAlsoSubscribe?: (identity: string, filter: string) => boolean;
}

export interface BrokerPorts {
  tcp: number;
  tls: number | undefined;
  ws: number | undefined;
}

type ClientInternals = Client & { will?: PublishPacket | null; _disconnected?: boolean };
/** Aedes.publish as its protocol handlers call it: (packet, client, done). */
type RoutePublish = (
  packet: PublishPacket,
  client: Client | null | ((err?: Error) => void),
  done?: (err?: Error) => void,
) => void;

/** Whether a listen address is reachable from this host only. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h) || /^::ffff:127\./.test(h);
}

/**
 * Whether devices without credentials may connect, naming themselves. Refuses
 * to start when the broker is reachable from other hosts with no way for
 * devices to prove who they are (any client could publish as any device),
 * unless that was asked for explicitly.
 */
export function anonymousAllowed(config: GatewayConfig, logger: Logger): boolean {
  const mode = config['auth.allowAnonymous'];
  const host = config['broker.host'];
  const loopback = isLoopbackHost(host);
  const credentials = config['auth.credentialsFile'] !== undefined;
  const certificates = config['broker.tlsPort'] >= 0 && config['broker.tlsCaFile'] !== undefined;
  if (mode === 'false') {
    if (!credentials && !certificates)
      logger.warn(
        'auth.allowAnonymous=false and neither auth.credentialsFile nor broker.tlsCaFile is set: no device can connect',
      );
    return false;
  }
  if (mode === 'true') {
    if (!loopback && !credentials)
      logger.warn(
        { host },
        'anonymous devices accepted on a non-loopback address: any client can publish as any device (auth.allowAnonymous=true)',
      );
    return true;
  }
  if (loopback) return true;
  if (!credentials && !certificates)
    throw new ConfigError(
      'auth.allowAnonymous',
      'value "loopback"',
      `refuses anonymous devices on ${host}, which other hosts can reach, and no device credentials are configured: any client could publish as any device. Set auth.credentialsFile to a file of device id -> scrypt hash (make each with \`gateway hash-password\`), or broker.tlsPort with broker.tlsCaFile for client certificates, or auth.allowAnonymous=true on a trusted network`,
    );
  return false;
}

export class GatewayBroker implements DeviceReach {
  readonly aedes: Aedes;
  private readonly identities = new WeakMap<Client, string>();
  /** Connected clients per device (a device may hold several connections). */
  private readonly connections = new Map<string, number>();
  private readonly onlineSet = new Set<string>();
  private readonly changeListeners: Array<(deviceId: string, online: boolean) => void> = [];
  private readonly ackListeners: Array<(deviceId: string, topic: string, payload: Buffer) => void> = [];
  private servers: Array<NetServer | HttpServer> = [];
  private wss: WebSocketServer | undefined;
  private serversClosed: Promise<unknown> | undefined;
  ports: BrokerPorts = { tcp: 0, tls: undefined, ws: undefined };
  /** Devices without credentials may connect (see anonymousAllowed). */
  private readonly anonymous: boolean;
  /**
   * Filters each device subscribed to (any of its connections), as routing needs them. Kept
   * when the device leaves: a persistent session keeps its subscriptions, and a filter kept too
   * long costs only a routing. Bounded by the fleet, a few filters each.
   */
  private readonly filters = new Map<string, Set<string>>();
  /** Publishes taken that no subscription can receive: aedes' routing is skipped for them. */
  private readonly unrouted = new WeakSet<PublishPacket>();

  constructor(
    private readonly config: GatewayConfig,
    private readonly deps: BrokerDeps,
  ) {
    this.anonymous = anonymousAllowed(config, deps.logger);
    this.aedes = new Aedes({
      id: config['gateway.id'] || undefined,
      authenticate: (client, username, password, done) => this.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => {
        const identity = this.identities.get(client);
        if (
          identity !== undefined &&
          (this.deps.acl.allows(identity, sub.topic) || this.deps.mayAlsoSubscribe?.(identity, sub.topic))
        ) {
          done(null, sub);
          return;
        }
        this.deps.metrics.unauthorized.inc();
        this.deps.logger.debug({ client: client.id, topic: sub.topic }, 'subscription refused by ACL');
        // A null subscription is refused with SUBACK return code 0x80 [MQTT-3.9.3].
        done(null, null);
      },
    });
    this.aedes.on('client', (client) => {
      const identity = this.identities.get(client);
      if (identity === undefined) return;
      // No callback: nobody waits for it, so it is bounded (gateway.maxPendingEvents) instead.
      this.deps.records.presence(identity, 'connected', undefined);
      this.deps.records.holdSession(identity);
      this.connections.set(identity, (this.connections.get(identity) ?? 0) + 1);
      this.onlineSet.add(identity);
      for (const l of this.changeListeners) l(identity, true);
    });
    this.aedes.on('subscribe', (subs, client) => {
      // A device that subscribes (again) may now receive what was held for it.
      const identity = this.identities.get(client);
      if (identity === undefined) return;
      const filters = this.filters.get(identity) ?? new Set<string>();
      this.filters.set(identity, filters);
      for (const sub of subs) filters.add(sub.topic);
      for (const l of this.changeListeners) l(identity, true);
    });
    this.aedes.on('unsubscribe', (unsubscriptions, client) => {
      // Another connection of the device may still hold the filter: that costs a routing, no message.
      const identity = this.identities.get(client);
      if (identity === undefined || this.connections.get(identity)! > 1) return;
      for (const filter of unsubscriptions) this.filters.get(identity)?.delete(filter);
    });
    // Publishes from devices come here after their PUBACK (lib/handlers/publish.js); the
    // gateway's own (commands) and those a subscriber may receive are routed as ever.
    const route = this.aedes.publish.bind(this.aedes) as RoutePublish;
    (this.aedes as unknown as { publish: RoutePublish }).publish = (packet, client, done) => {
      if (this.unrouted.delete(packet)) {
        (typeof client === 'function' ? client : done)?.();
        return;
      }
      route(packet, client, done);
    };
    this.aedes.on('clientDisconnect', (client) => {
      const identity = this.identities.get(client);
      if (identity === undefined) return;
      const clean = (client as ClientInternals)._disconnected === true;
      this.deps.records.presence(identity, clean ? 'disconnected' : 'lost', undefined);
      const left = (this.connections.get(identity) ?? 1) - 1;
      if (left > 0) this.connections.set(identity, left);
      else {
        this.connections.delete(identity);
        this.onlineSet.delete(identity);
        this.deps.records.releaseSession(identity).catch(() => {
          // Best effort: a gateway whose lease expires has its holders ended by another (gateway/lease.ts).
        });
        // Memory stays bounded by connected devices (gateway/sequencer.ts).
        this.deps.ingestor.forget(identity);
        for (const l of this.changeListeners) l(identity, false);
      }
    });
    this.aedes.on('ack', (packet, client) => {
      const identity = this.identities.get(client);
      // aedes emits `ack` without a packet for a PUBACK of an unknown message id (a device that
      // rebooted acknowledges a previous life's delivery): a stray ack must not crash the gateway.
      if (identity === undefined || !packet || packet.cmd !== 'publish') return;
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      for (const l of this.ackListeners) l(identity, packet.topic, payload);
    });
    this.aedes.on('clientError', (client, err) => {
      this.deps.logger.debug({ client: client.id, error: err.message }, 'client error');
    });
  }

  online(): ReadonlySet<string> {
    return this.onlineSet;
  }

  onChange(listener: (deviceId: string, online: boolean) => void): void {
    this.changeListeners.push(listener);
  }

  onAck(listener: (deviceId: string, topic: string, payload: Buffer) => void): void {
    this.ackListeners.push(listener);
  }

  async listen(): Promise<BrokerPorts> {
    await this.aedes.listen();
    const c = this.config;
    const host = c['broker.host'];
    const tcp = createNetServer(this.aedes.handle);
    this.ports.tcp = await this.serve(tcp, c['broker.port'], host);
    if (c['broker.tlsPort'] >= 0) {
      if (!c['broker.tlsCertFile'] || !c['broker.tlsKeyFile']) {
        const { ConfigError } = await import('#shared/errors.js');
        throw new ConfigError('broker.tlsCertFile', 'config', 'and broker.tlsKeyFile are required for TLS');
      }
      const ca = c['broker.tlsCaFile'];
      const tls = createTlsServer(
        {
          cert: readFileSync(c['broker.tlsCertFile']),
          key: readFileSync(c['broker.tlsKeyFile']),
          ca: ca ? readFileSync(ca) : undefined,
          requestCert: ca !== undefined,
          rejectUnauthorized: ca !== undefined,
        },
        this.aedes.handle,
      );
      this.ports.tls = await this.serve(tls, c['broker.tlsPort'], host);
    }
    if (c['broker.wsPort'] >= 0) {
      const http = createHttpServer();
      this.wss = new WebSocketServer({ server: http });
      this.wss.on('connection', (socket, req) => this.aedes.handle(createWebSocketStream(socket), req));
      this.ports.ws = await this.serve(http, c['broker.wsPort'], host);
    }
    return this.ports;
  }

  private async serve(server: NetServer | HttpServer, port: number, host: string): Promise<number> {
    server.listen(port, host);
    await once(server, 'listening');
    this.servers.push(server);
    return (server.address() as AddressInfo).port;
  }

  /** Publishes a message to devices (commands). QoS 1 is queued for offline devices with persistent sessions. */
  publish(topic: string, payload: Buffer, qos: 0 | 1): Promise<void> {
    return new Promise((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic, payload, qos, retain: false, dup: false }, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  /**
   * Stops accepting connections; open ones stay, so PUBACKs of what the
   * gateway still flushes reach their devices. A server's close() calls back
   * only once its last connection ends: close() waits for that.
   */
  stopAccepting(): void {
    if (this.serversClosed) return;
    this.wss?.close();
    this.serversClosed = Promise.all(
      this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    );
  }

  async close(): Promise<void> {
    this.stopAccepting();
    // Then let aedes close the device connections, then wait for the servers.
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    await this.serversClosed;
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    const fail = (code: 4 | 5, why: string) => {
      this.deps.logger.info({ client: client.id, username, why }, 'device refused at connect');
      const err = Object.assign(new Error(why), { returnCode: code }) as AuthenticateError;
      done(err, false);
    };
    // A verified client certificate names the device (its subject CN).
    const conn = client.conn as Partial<TLSSocket>;
    if (typeof conn.getPeerCertificate === 'function' && conn.authorized) {
      const cn = conn.getPeerCertificate().subject?.CN;
      if (typeof cn === 'string' && cn) {
        this.identities.set(client, cn);
        done(null, true);
        return;
      }
    }
    const credentials = this.deps.credentials;
    if (credentials) {
      const stored = username === undefined ? undefined : credentials.get(username);
      if (stored === undefined || password === undefined) {
        fail(4, 'unknown device or no password');
        return;
      }
      verifyPassword(password, stored).then(
        (ok) => {
          if (!ok) {
            fail(4, 'wrong password');
            return;
          }
          this.identities.set(client, username!);
          done(null, true);
        },
        (err: Error) => fail(4, err.message),
      );
      return;
    }
    if (!this.anonymous) {
      fail(5, 'anonymous devices are not allowed');
      return;
    }
    // Anonymous devices name themselves: by user name when they send one, else by client id.
    this.identities.set(client, username || client.id);
    done(null, true);
  }

  private authorizePublish(
    client: Client | null,
    packet: PublishPacket,
    done: (err?: Error | null) => void,
  ): void {
    // Wills of devices that left long ago are published with no client; their device is in the topic.
    const identity = client ? this.identities.get(client) : undefined;
    const will = client !== null && (client as ClientInternals).will === packet;
    const topic = packet.topic;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    // A protocol's will (a Sparkplug NDEATH) is its message, not a presence record: the ingestor takes it.
    if (will && identity !== undefined && !this.deps.ingestor.claims(topic)) {
      if (!this.deps.acl.allows(identity, topic)) {
        this.refuse(packet, done);
        return;
      }
      this.deps.records.presence(identity, 'will', payload, () => {
        this.routeIfSubscribed(identity, packet);
        done(null);
      });
      return;
    }
    this.deps.ingestor.handle(
      { topic, payload, identity: identity ?? (client ? client.id : undefined) },
      () => {
        // Anything outside the device's own namespace was refused or rejected: it must reach no subscriber.
        if (identity === undefined || !this.deps.acl.allows(identity, topic)) this.hide(packet);
        else this.routeIfSubscribed(identity, packet);
        done(null);
      },
    );
  }

  /** Routes a device's publish through aedes only when one of its filters matches it (or it is retained). */
  private routeIfSubscribed(identity: string, packet: PublishPacket): void {
    if (packet.retain) return;
    const filters = this.filters.get(identity);
    if (filters) for (const filter of filters) if (filterMatches(filter, packet.topic)) return;
    this.unrouted.add(packet);
  }

  private refuse(packet: PublishPacket, done: (err?: Error | null) => void): void {
    this.deps.metrics.unauthorized.inc();
    this.deps.records.refusals.hit();
    this.hide(packet);
    done(null);
  }

  private hide(packet: PublishPacket): void {
    packet.topic = REFUSED_TOPIC;
    packet.retain = false;
    this.unrouted.add(packet);
  }
}
