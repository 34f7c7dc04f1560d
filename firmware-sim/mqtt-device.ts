/**
 * MQTT-only firmware, as a small microcontroller speaks it (docs/gateway.md):
 *
 * - a stable client id (the device id) and a persistent session (clean: false),
 *   so the broker keeps its subscription and queued QoS 1 commands while it is away;
 * - a last will on its status topic ({"online":false}), and {"online":true} on connect;
 * - telemetry at QoS 1 as `{"seq", "time", ...reading}`: the device's own sequence
 *   numbers make a resend after a lost PUBACK harmless (idempotent append);
 * - reconnects with capped exponential backoff and jitter (not in lockstep);
 * - at most `mqtt.maxInflight` QoS 1 publishes unacknowledged; beyond that, and
 *   while disconnected, a small bounded queue in RAM (`mqtt.queueLimit`, oldest
 *   dropped first, counted): a slow broker costs readings on the device, never
 *   unbounded memory. A crash loses the queue, as a reboot loses RAM; the
 *   sequence counter survives it (firmware keeps it in flash/RTC memory);
 * - commands on its command topic: dropped past their deadline, deduplicated
 *   by id (a redelivery gets the same reply again), answered on the result topic.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Clock } from '#shared/clock.js';
import {
  type CommandMessage,
  decodeCommandMessage,
  encodeResultMessage,
  type ResultMessage,
} from '#shared/commands/mqtt-messages.js';
import type { Logger } from '#shared/log.js';
import { mqttClientLog } from '#shared/mqtt-log.js';
import type { SimConfig } from './config.js';
import { type KindStats, SimDevice } from './device.js';
import type { Faults } from './faults.js';
import type { DeviceLedger } from './ledger.js';
import type { DeviceModel, PayloadText } from './profiles.js';

export interface MqttDeviceDeps {
  config: SimConfig;
  faults: Faults;
  stats: KindStats;
  logger: Logger;
  clock: Clock;
}

interface Outgoing {
  readonly topic: string;
  readonly body: string;
  /** Telemetry: its seq (for the ledger); results and status carry none. */
  readonly seq: number | undefined;
}

/** Every publish's options (MQTT.js copies them; one object for all). */
const PUBLISH_QOS1 = { qos: 1 } as const;

/** Replies remembered for deduplication: a microcontroller keeps a few. */
const REMEMBERED_REPLIES = 32;

export class MqttDevice extends SimDevice {
  readonly kind = 'mqtt' as const;
  private client: MqttClient | undefined;
  private connected = false;
  private queue: Outgoing[] = [];
  private held: Outgoing | undefined;
  private readonly replies = new Map<string, string>();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempts = 0;
  /** Connections opened so far: each new one goes to the next broker of `mqtt.url`'s list. */
  private turns = 0;
  private stopped = false;
  /** QoS 1 publishes sent and not yet acknowledged (the in-flight window). */
  private inflight = 0;
  private readonly maxInflight: number;
  private readonly topics: { telemetry: string; commands: string; results: string; status: string };
  /** devices/<id>/telemetry/<type> by type, built once per type instead of once per reading. */
  private readonly telemetryTopics = new Map<string, string>();

  constructor(
    id: string,
    model: DeviceModel,
    clockOffset: number,
    firstDue: number,
    random: () => number,
    seqs: DeviceLedger,
    private readonly deps: MqttDeviceDeps,
  ) {
    super(id, model, clockOffset, firstDue, random, seqs);
    this.maxInflight = deps.config['mqtt.maxInflight'];
    this.topics = {
      telemetry: `devices/${id}/telemetry`,
      commands: `devices/${id}/commands`,
      results: `devices/${id}/results`,
      status: `devices/${id}/status`,
    };
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** Connects (a new MQTT client: after a crash nothing of the old one survives). */
  start(): void {
    this.stopped = false;
    this.running = true;
    const c = this.deps.config;
    const client = mqtt.connect(pickBroker(c['mqtt.url'], this.id, this.turns++), {
      clientId: this.id,
      clean: false,
      keepalive: c['mqtt.keepalive'],
      // MQTT.js re-arms its keepalive timer on every PUBACK by default (a clear and a new timer per
      // message); the spec only needs a PINGREQ within each keepalive [MQTT-3.1.2-23], which it still sends.
      reschedulePings: false,
      reconnectPeriod: 0, // our own backoff (below): MQTT.js retries at a fixed period
      connectTimeout: 10_000,
      log: mqttClientLog(),
      will: { topic: this.topics.status, payload: Buffer.from('{"online":false}'), qos: 1, retain: false },
    });
    this.client = client;
    client.on('connect', (connack) => {
      // A connection that completes after stop() or a crash: MQTT.js may have closed its stores already.
      if (client !== this.client || this.stopped) return;
      this.connected = true;
      this.attempts = 0;
      this.deps.stats.connected++;
      // A persistent session keeps the subscription; subscribe when the broker has none.
      if (!connack.sessionPresent) {
        client.subscribe(this.topics.commands, { qos: 1 }, (err) => {
          if (err) this.deps.stats.errors++;
        });
      }
      this.queue.unshift({ topic: this.topics.status, body: '{"online":true}', seq: undefined });
      this.drain();
    });
    client.on('close', () => {
      if (client !== this.client) return;
      if (this.connected) {
        this.connected = false;
        this.deps.stats.connected--;
      }
      if (!this.stopped && this.running) this.scheduleReconnect();
    });
    client.on('error', () => {
      this.deps.stats.errors++;
    });
    client.on('message', (topic, payload) => {
      if (topic === this.topics.commands) this.onCommand(payload);
    });
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer) return;
    const c = this.deps.config;
    // Capped exponential backoff with jitter (half to all of it): a fleet dropped at once comes back spread out.
    const exp = Math.min(
      c['mqtt.reconnectMax'],
      c['mqtt.reconnectBase'] * 2 ** Math.min(this.attempts++, 16),
    );
    const delay = Math.round(exp / 2 + (Math.random() * exp) / 2);
    this.reconnectTimer = this.deps.clock.setTimeout(() => {
      this.reconnectTimer = undefined;
      const client = this.client;
      if (!client || this.stopped || !this.running || client.disconnecting) return;
      // Keep the stores: unacknowledged QoS 1 publishes are resent on the new connection.
      client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore });
    }, delay);
  }

  private telemetryTopic(type: string): string {
    let topic = this.telemetryTopics.get(type);
    if (topic === undefined) {
      topic = `${this.topics.telemetry}/${type}`;
      this.telemetryTopics.set(type, topic);
    }
    return topic;
  }

  protected publish(type: string, payload: PayloadText, time: number): void {
    const seq = this.seqs.nextSeq();
    // {"seq":…,"time":…} and then the reading's own fields: the payload text without its opening brace.
    const body = `{"seq":${seq},"time":${time},${payload.slice(1)}`;
    const topic = this.telemetryTopic(type);
    const faults = this.deps.faults;
    if (faults.malformed()) this.send(topic, `{"seq":${seq},"time":${time},"broken`, undefined);
    if (this.held) {
      const earlier = this.held;
      this.held = undefined;
      this.send(topic, body, seq);
      this.send(earlier.topic, earlier.body, earlier.seq);
      return;
    }
    if (faults.holdBack()) {
      this.held = { topic, body, seq };
      return;
    }
    this.send(topic, body, seq);
    if (faults.duplicate()) this.send(topic, body, seq);
  }

  /**
   * Sends now when connected and the in-flight window has room, else keeps it in the bounded local
   * queue. Takes the message's parts rather than an Outgoing: most readings go out at once, and
   * those need no object of their own.
   */
  private send(topic: string, body: string, seq: number | undefined): void {
    if (this.connected && this.queue.length === 0 && this.inflight < this.maxInflight) {
      this.transmit(topic, body, seq);
      return;
    }
    const m: Outgoing = { topic, body, seq };
    // Command results go first and are never the ones dropped: a reading is worth less than an answer.
    if (m.seq === undefined) {
      const firstReading = this.queue.findIndex((q) => q.seq !== undefined);
      this.queue.splice(firstReading < 0 ? this.queue.length : firstReading, 0, m);
    } else this.queue.push(m);
    if (this.queue.length > this.deps.config['mqtt.queueLimit']) {
      const i = this.queue.findIndex((q) => q.seq !== undefined);
      const [oldest] = this.queue.splice(Math.max(i, 0), 1);
      if (oldest) this.dropped(oldest);
    }
  }

  private dropped(m: Outgoing): void {
    if (m.seq === undefined) return;
    this.deps.stats.dropped++;
    this.seqs.dropped(m.seq);
  }

  /** Sends queued messages while connected and the window has room. */
  private drain(): void {
    while (this.connected && this.inflight < this.maxInflight && this.queue.length > 0) {
      const m = this.queue.shift()!;
      this.transmit(m.topic, m.body, m.seq);
    }
  }

  private transmit(topic: string, body: string, seq: number | undefined): void {
    const client = this.client;
    if (!client) return;
    if (seq !== undefined) this.deps.stats.sent++;
    this.inflight++;
    client.publish(topic, body, PUBLISH_QOS1, (err) => {
      if (client !== this.client) return; // a crashed life's publish
      this.inflight--;
      if (this.queue.length > 0) this.drain();
      if (seq === undefined) return;
      if (err) {
        this.deps.stats.errors++;
        return;
      }
      this.deps.stats.acked++;
      this.seqs.acked(seq);
    });
  }

  private onCommand(raw: Buffer): void {
    const stats = this.deps.stats;
    let cmd: CommandMessage;
    try {
      cmd = decodeCommandMessage(raw);
    } catch {
      stats.errors++; // nothing to answer: a command without an id cannot be replied to
      return;
    }
    stats.commandsReceived++;
    const again = this.replies.get(cmd.id);
    if (again !== undefined) {
      // A redelivery (the persistent session, or the gateway after a reconnect): the same reply, no second effect.
      this.send(this.topics.results, again, undefined);
      return;
    }
    // Never execute after the deadline [docs/guarantees.md §2], by the device's own clock (a device
    // whose clock runs ahead drops commands early: the gateway then records them expired or unknown).
    if (this.deps.clock.now() + this.clockOffset > cmd.deadline) return;
    const stall = this.deps.faults.commandStall();
    const answer = () => {
      const reply = encodeResultMessage({ id: cmd.id, ...this.execute(cmd) });
      this.replies.set(cmd.id, reply);
      if (this.replies.size > REMEMBERED_REPLIES) this.replies.delete(this.replies.keys().next().value!);
      stats.commandsAnswered++;
      this.send(this.topics.results, reply, undefined);
    };
    if (stall > 0) this.deps.clock.setTimeout(answer, stall);
    else answer();
  }

  private execute(cmd: CommandMessage): Omit<ResultMessage, 'id'> {
    switch (cmd.name) {
      case 'ping':
        return { status: 'succeeded', output: { pong: true, time: this.deps.clock.now() } };
      case 'set-interval': {
        const { sensor, interval } = cmd.args;
        const previous = typeof sensor === 'string' ? this.intervalOf(sensor) : undefined;
        if (previous === undefined || typeof interval !== 'number' || !(interval >= 1))
          return {
            status: 'rejected',
            errorClass: 'ValidationError',
            message: `set-interval needs a running sensor (${this.types.join(', ')}) and an interval >= 1 ms`,
          };
        this.setInterval(sensor as string, interval);
        return { status: 'succeeded', output: { sensor, intervalMs: interval, previousMs: previous } };
      }
      case 'reboot':
        return { status: 'succeeded', output: { rebootedAt: this.deps.clock.now() } };
      default:
        return {
          status: 'rejected',
          errorClass: 'UnknownCommand',
          message: `no handler named "${cmd.name}" (known: ping, set-interval, reboot)`,
        };
    }
  }

  /** Storm: the connection drops without a DISCONNECT (the broker publishes the will); we reconnect. */
  disconnect(): void {
    if (!this.connected) return;
    this.deps.stats.disconnects++;
    this.client?.stream.destroy();
  }

  /** Crash: the socket dies, RAM (queue, held reading, MQTT.js stores) is lost; reboot after `downtimeMs`. */
  crash(downtimeMs: number): void {
    if (!this.running) return;
    this.running = false;
    this.deps.stats.crashes++;
    const client = this.client;
    this.client = undefined;
    if (this.connected) {
      this.connected = false;
      this.deps.stats.connected--;
    }
    if (this.reconnectTimer) this.deps.clock.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    client?.stream.destroy();
    client?.end(true);
    for (const m of this.queue) this.dropped(m);
    if (this.held) this.dropped(this.held);
    this.queue = [];
    this.held = undefined;
    this.inflight = 0;
    this.replies.clear();
    this.deps.clock.setTimeout(() => {
      if (!this.stopped) this.start();
    }, downtimeMs);
  }

  /** Clean stop: sends what it holds, waits (bounded) for PUBACKs, then DISCONNECT (no will). */
  async stop(timeoutMs: number): Promise<void> {
    this.running = false;
    const held = this.held;
    if (held) {
      this.held = undefined;
      this.send(held.topic, held.body, held.seq);
    }
    // Let the queue drain through the in-flight window while connected (bounded by timeoutMs).
    const deadline = Date.now() + timeoutMs;
    while (this.connected && (this.queue.length > 0 || this.inflight > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    this.stopped = true;
    if (this.reconnectTimer) this.deps.clock.clearTimeout(this.reconnectTimer);
    const client = this.client;
    if (!client) return;
    for (const m of this.queue) this.dropped(m);
    this.queue = [];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(
        () => {
          // PUBACKs did not all come: give up on them (they stay "sent, not acknowledged" in the ledger).
          client.stream.destroy();
          resolve();
        },
        Math.max(100, deadline - Date.now()),
      );
      client.end(false, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (this.connected) {
      this.connected = false;
      this.deps.stats.connected--;
    }
  }
}

/**
 * `mqtt.url` may list several brokers (several gateways in broker mode),
 * comma-separated: devices spread over them by id, and each reconnection
 * goes to the next one, so a gateway that is gone loses its devices to the others.
 */
export function pickBroker(urls: string, deviceId: string, turn: number): string {
  const list = urls
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  let h = 0;
  for (let i = 0; i < deviceId.length; i++) h = (h * 31 + deviceId.charCodeAt(i)) >>> 0;
  return list[(h + turn) % list.length] ?? urls;
}
