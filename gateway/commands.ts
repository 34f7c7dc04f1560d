/**
 * Command delivery to MQTT devices: the gateway side of
 * docs/guarantees.md §2 for devices that run no agent.
 *
 * Commands are sent with the same API and CLI as for agents (shared/commands)
 * into the device's command stream. Gateways read those streams as one
 * consumer group (`gateways`), publish each command as JSON at QoS 1 to the
 * device's command topic, and turn the device's reply on its result topic
 * into the command's one terminal result (ledger first, then the results
 * stream once, then XACK), with the same scripts the agent uses.
 *
 * Deadlines: a command is published only before its deadline. In broker mode
 * the gateway holds commands for offline devices itself (not in an MQTT
 * session queue it could not revoke) and publishes them when the device comes
 * back; in bridge mode the upstream broker holds them, published over MQTT v5
 * with a message expiry at the deadline so the broker drops them undelivered
 * then [MQTT-3.3.2-5] (over 3.1.1 only the payload's deadline, for the
 * firmware to check). With no reply by the deadline the command ends
 * `expired` (the device never acknowledged it) or `unknown` (it did, and may
 * have acted). Bridge mode cannot see the device's PUBACK (it goes to the
 * upstream broker): `delivered` is recorded only when the device replies, and
 * without a reply the command ends `unknown` if the device was seen (any
 * publish through a gateway) after the broker took the command, else
 * `expired`. A sweeper ends commands of devices no gateway
 * reads (offline, or served by a gateway that died) the same way, so no
 * command hangs while any gateway runs. It also ends `queued` commands of
 * agents that never came back (every device with a command stream): only
 * while the ledger is still `queued`, in one script step
 * (expireQueuedCommand-2.lua), so it and the agent never both decide.
 *
 * A terminal ledger is never acknowledged (XACK, PUBACK) before its result is
 * in the results stream: the publish is idempotent (publishOnce-2.lua, a
 * marker per command), so it is simply run again wherever a terminal ledger
 * is met (a redelivered entry, the sweep), and a result whose recording
 * failed is retried before the device's PUBACK goes out. `failed` results are
 * dead-lettered as the agent's are (shared/commands/deadletter.ts).
 *
 * When commands are read: a sender rings the doorbell (`iot:commands:doorbell`,
 * shared/commands/send.ts ringDoorbell) after queueing a command; every
 * gateway blocks on it (XREAD BLOCK on a connection of its own) and reads the
 * command stream of each device named there that it can reach (broker mode:
 * connected to it; bridge mode: an MQTT device). The doorbell is only a hint:
 * a slow fallback poll (`commands.pollInterval`) reads every reachable
 * device's stream, so a lost or trimmed doorbell entry delays a command and
 * never loses it. A device that (re)connects has its stream read at once.
 *
 * Device protocol (JSON): command {id, name, args, deadline, issuedAt};
 * result {id, status: succeeded|failed|rejected, output?, errorClass?, message?}.
 */
import {
  type Command,
  type CommandResult,
  decodeCommand,
  decodeResult,
  isTerminal,
  resultFields,
} from '#shared/commands/codec.js';
import { publishDeadLetter } from '#shared/commands/deadletter.js';
import { DEFAULT_LEDGER_RETENTION_MS, duplicateClient, registerDevice } from '#shared/commands/send.js';
import { Counter } from '#shared/metrics.js';
import { type RedisClient, reconnectDelay } from '#shared/redis/connect.js';
import { scripts } from '#shared/redis/scripts.js';
import { ExpiresTooSoonError } from './bridge.js';
import type { Done } from './ingest.js';
import type { DeviceReach, GatewayContext, GatewayService, RoutedCommand } from './services.js';

export const COMMAND_GROUP = 'gateways';
/** After its deadline, how long a `delivered` command waits for the gateway holding it before the sweeper ends it. */
const ORPHAN_GRACE_MS = 5000;
/** How long one doorbell read blocks; it wakes at once when a command is queued, so this only bounds idle round trips. */
const DOORBELL_BLOCK_MS = 5000;
/** Entries a command-stream read takes at once; a device with more is read again at once. */
const READ_COUNT = 32;
/** Devices the sweep looks at per tick (SSCAN pages of the fleet): a large fleet is swept over several ticks. */
const SWEEP_DEVICES_PER_TICK = 500;
/** Entries of one device's command stream the sweep reads per tick. */
const SWEEP_ENTRIES = 100;
/** Bridge mode: wait before publishing again a command the upstream broker did not take. */
const REPUBLISH_DELAY_MS = 1000;

interface Held {
  readonly deviceId: string;
  readonly entryId: string;
  readonly command: Command;
  /** The entry's fields as read, for a dead letter. */
  readonly fields: string[];
  acked: boolean;
  timer: NodeJS.Timeout;
  /** Bridge mode: when the upstream broker took the command (PUBACK to this gateway), if it did. */
  sentAt?: number;
  /** Bridge mode: a publish in flight, or a retry of a failed one waiting. */
  sending?: boolean;
  retry?: NodeJS.Timeout;
}

export interface CommandOptions {
  /** Fallback poll of every reachable device's command stream (the doorbell is the fast path). */
  pollIntervalMs: number;
  sweepIntervalMs: number;
  /**
   * After its deadline, how long an agent's `delivered` or `running` command
   * waits for the agent's own result before the sweep ends it `unknown`. An
   * attempt starts only before the deadline and is bounded by its handler's
   * timeout, so past this grace the agent is gone (or cut off), not busy.
   */
  agentResultGraceMs: number;
  retentionMs: number;
  /** Block on the doorbell stream; off, commands wait for the fallback poll. */
  doorbell: boolean;
}

export const DEFAULT_COMMAND_OPTIONS: CommandOptions = {
  pollIntervalMs: 2000,
  sweepIntervalMs: 1000,
  agentResultGraceMs: 10 * 60_000,
  retentionMs: DEFAULT_LEDGER_RETENTION_MS,
  doorbell: true,
};

type XReadReply = Array<[string, Array<[string, string[]]>]> | null;

export class CommandDelivery implements GatewayService {
  readonly name = 'commands';
  private readonly held = new Map<string, Held>();
  private readonly grouped = new Set<string>();
  private readonly registered = new Set<string>();
  private readonly recovered = new Set<string>();
  /** Per device, where the sweep's next read of its command stream starts (bounded by the fleet). */
  private readonly sweepCursor = new Map<string, string>();
  /** SSCAN cursor of the sweep over the fleet; '0' starts a new pass. */
  private fleetCursor = '0';
  private pollTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private sweeping = false;
  /** Reads of one device's command stream in progress; `again` when another was asked for meanwhile. */
  private readonly reads = new Map<string, { again: boolean; done: Promise<void> }>();
  private running = false;
  /** The doorbell's own connection (a blocked XREAD holds its connection) and its read loop. */
  private bell: RedisClient | undefined;
  private bellLoop: Promise<void> | undefined;
  private readonly results: Counter<'status'>;
  private readonly deadLetters: Counter;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly reach: DeviceReach,
    private readonly options: CommandOptions = DEFAULT_COMMAND_OPTIONS,
  ) {
    this.results = new Counter({
      name: 'gateway_command_results_total',
      help: 'Terminal results this gateway published, by status (MQTT devices; and commands the sweep ended or republished)',
      labelNames: ['status'],
      registers: [ctx.registry],
    });
    this.deadLetters = new Counter({
      name: 'gateway_command_dead_letters_total',
      help: 'Failed commands of MQTT devices written to the dead-letter stream',
      registers: [ctx.registry],
    });
  }

  private static key(deviceId: string, id: string): string {
    return `${deviceId}\u0000${id}`;
  }

  async start(): Promise<void> {
    const c = this.ctx;
    c.ingestor.setResultHandler((deviceId, payload, done) => this.onResult(deviceId, payload, done));
    c.ingestor.onDevice = (deviceId) => this.register(deviceId);
    this.reach.onChange((deviceId, online) => {
      if (online) {
        this.register(deviceId);
        this.deliver(deviceId);
        // Commands queued while it was away (their doorbell rang when no gateway could reach it).
        this.readSoon(deviceId);
      }
    });
    this.reach.onAck((deviceId, topic, payload) => this.onDeviceAck(deviceId, topic, payload));
    this.running = true;
    if (this.options.doorbell) {
      const bell = duplicateClient(c.client);
      bell.on('error', () => {
        // Reconnects by itself; the read loop retries, and the fallback poll covers the gap.
      });
      this.bell = bell;
      // From the doorbell's current end: what was queued before is found by the first poll, just below.
      const tail = await c.client.xrevrange(c.keys.commandDoorbell(), '+', '-', 'COUNT', 1);
      this.bellLoop = this.listen(bell, tail[0]?.[0] ?? '0-0');
    }
    void this.poll();
    this.pollTimer = c.clock.setInterval(() => void this.poll(), this.options.pollIntervalMs);
    this.sweepTimer = c.clock.setInterval(() => void this.sweep(), this.options.sweepIntervalMs);
  }

  async stop(): Promise<void> {
    const c = this.ctx;
    this.running = false;
    this.bell?.disconnect();
    await this.bellLoop;
    if (this.pollTimer) c.clock.clearInterval(this.pollTimer);
    if (this.sweepTimer) c.clock.clearInterval(this.sweepTimer);
    for (const h of this.held.values()) {
      c.clock.clearTimeout(h.timer);
      if (h.retry) c.clock.clearTimeout(h.retry);
    }
    // Held entries stay in this consumer's pending list: a restart with the same gateway.id reads them again.
    this.held.clear();
    c.ingestor.setResultHandler(undefined);
  }

  private register(deviceId: string): void {
    if (this.registered.has(deviceId)) return;
    this.registered.add(deviceId);
    const c = this.ctx;
    Promise.all([
      c.client.sadd(c.keys.mqttDevices(), deviceId),
      registerDevice(c.client, c.keys, deviceId, []),
    ]).catch((err: Error) => {
      this.registered.delete(deviceId);
      c.logger.warn({ deviceId, error: err.message }, 'device registration failed; retried on next sight');
    });
  }

  /** Devices whose command streams this gateway reads: its connected devices, or (bridge) every MQTT device. */
  private async readable(): Promise<string[]> {
    const online = this.reach.online();
    if (online) return [...online];
    return this.ctx.client.smembers(this.ctx.keys.mqttDevices());
  }

  private async ensureGroup(stream: string): Promise<void> {
    if (this.grouped.has(stream)) return;
    try {
      await this.ctx.client.xgroup('CREATE', stream, COMMAND_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.grouped.add(stream);
  }

  /**
   * Blocks on the doorbell and reads the command streams of the devices named
   * there that this gateway can reach. Each read starts after the last entry
   * seen, so entries added while the connection was down are still seen
   * (unless trimmed meanwhile: then the fallback poll finds the commands).
   */
  private async listen(bell: RedisClient, from: string): Promise<void> {
    const c = this.ctx;
    const key = c.keys.commandDoorbell();
    let last = from;
    while (this.running) {
      let reply: XReadReply;
      try {
        reply = (await bell.xread(
          'COUNT',
          1000,
          'BLOCK',
          DOORBELL_BLOCK_MS,
          'STREAMS',
          key,
          last,
        )) as XReadReply;
      } catch {
        if (!this.running) return;
        await new Promise<void>((r) => c.clock.setTimeout(r, 500));
        continue;
      }
      const devices = new Set<string>();
      for (const [, entries] of reply ?? []) {
        for (const [id, fields] of entries) {
          last = id;
          // Fields are [d, <deviceId>]; anything else is not ours and is skipped.
          if (fields[0] === 'd' && fields[1] !== undefined) devices.add(fields[1]);
        }
      }
      if (devices.size > 0) this.rung([...devices]);
    }
  }

  private rung(devices: string[]): void {
    const c = this.ctx;
    const online = this.reach.online();
    if (online) {
      for (const d of devices) if (online.has(d)) this.readSoon(d);
      return;
    }
    // Bridge mode: only MQTT devices. An agent's stream must never be read by gateways.
    c.client.smismember(c.keys.mqttDevices(), ...devices).then(
      (member) => {
        for (const [i, d] of devices.entries()) if (member[i] === 1) this.readSoon(d);
      },
      (err: Error) => c.logger.warn({ error: err.message }, 'doorbell lookup failed; the poll retries'),
    );
  }

  private readSoon(deviceId: string): void {
    this.read(deviceId).catch((err: Error) =>
      this.ctx.logger.warn({ deviceId, error: err.message }, 'command read failed; the poll retries'),
    );
  }

  /** Fallback: reads the stream of every reachable device, in case a doorbell was missed. */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    const c = this.ctx;
    try {
      const devices = await this.readable();
      await Promise.all(devices.map((deviceId) => this.read(deviceId)));
    } catch (err) {
      c.logger.warn({ error: (err as Error).message }, 'command poll failed; retrying');
    } finally {
      this.polling = false;
    }
  }

  /**
   * Reads a device's command stream; one read per device at a time (a read
   * asked for meanwhile runs once more after it), so an entry is never taken
   * twice by concurrent reads.
   */
  private read(deviceId: string): Promise<void> {
    const running = this.reads.get(deviceId);
    if (running) {
      running.again = true;
      return running.done;
    }
    const state = { again: false, done: Promise.resolve() };
    this.reads.set(deviceId, state);
    state.done = (async () => {
      try {
        do {
          state.again = false;
          await this.readOnce(deviceId);
        } while (state.again && this.running);
      } catch (err) {
        // An entry taken and not finished stays in our pending list: read that again next time.
        this.recovered.delete(this.ctx.keys.commands(deviceId));
        throw err;
      } finally {
        this.reads.delete(deviceId);
      }
    })();
    return state.done;
  }

  private async readOnce(deviceId: string): Promise<void> {
    const c = this.ctx;
    const stream = c.keys.commands(deviceId);
    await this.ensureGroup(stream);
    // First our own pending entries (read in a previous life of this gateway), then new ones.
    let pendingFrom = this.recovered.has(stream) ? undefined : '0';
    while (this.running) {
      const reply = (await c.client.xreadgroup(
        'GROUP',
        COMMAND_GROUP,
        c.gatewayId,
        'COUNT',
        READ_COUNT,
        'STREAMS',
        stream,
        pendingFrom ?? '>',
      )) as XReadReply;
      const entries = reply?.[0]?.[1] ?? [];
      for (const [entryId, fields] of entries) {
        const h = await this.take(deviceId, entryId, fields);
        if (h) this.publishHeld(h);
      }
      const full = entries.length === READ_COUNT;
      if (pendingFrom === undefined) {
        if (!full) return;
      } else if (full) {
        pendingFrom = entries[entries.length - 1]![0];
      } else {
        this.recovered.add(stream);
        pendingFrom = undefined;
      }
    }
  }

  private async take(deviceId: string, entryId: string, fields: string[]): Promise<Held | undefined> {
    const c = this.ctx;
    let command: Command;
    try {
      command = decodeCommand(fields);
    } catch (err) {
      c.logger.warn(
        { deviceId, entryId, error: (err as Error).message },
        'malformed command entry acknowledged',
      );
      await c.client.xack(c.keys.commands(deviceId), COMMAND_GROUP, entryId);
      return undefined;
    }
    const key = CommandDelivery.key(deviceId, command.id);
    if (this.held.has(key)) return undefined;
    const now = c.clock.now();
    const [status, stored] = await c.client.hmget(c.keys.commandLedger(deviceId, command.id), 'st', 'r');
    if (status && isTerminal(status)) {
      // Already ended, perhaps by a life of this gateway that died between the ledger and the
      // results stream: publish it (once) before the entry is acknowledged.
      if (stored) await this.conclude(deviceId, entryId, command, JSON.parse(stored) as string[], fields);
      await c.client.xack(c.keys.commands(deviceId), COMMAND_GROUP, entryId);
      return undefined;
    }
    if (command.deadline <= now) {
      await this.finish(
        deviceId,
        entryId,
        command,
        fields,
        'expired',
        'deadline passed before the device could receive it',
        status === 'delivered',
      );
      return undefined;
    }
    const held: Held = {
      deviceId,
      entryId,
      command,
      fields,
      acked: status === 'delivered',
      timer: c.clock.setTimeout(() => void this.onDeadline(key), command.deadline - now),
    };
    this.held.set(key, held);
    return held;
  }

  /** Publishes every held, unacknowledged command of a device that is reachable and within its deadline. */
  private deliver(deviceId: string): void {
    for (const h of this.held.values()) if (h.deviceId === deviceId) this.publishHeld(h);
  }

  /** Publishes one held command if it is unacknowledged, its device reachable, and its deadline ahead. */
  private publishHeld(h: Held): void {
    const c = this.ctx;
    if (h.acked) return;
    const online = this.reach.online();
    if (online && !online.has(h.deviceId)) return;
    // Never after the deadline [docs/guarantees.md §2: expired commands are never executed].
    if (h.command.deadline <= c.clock.now()) return;
    // Hook: a protocol's devices (Sparkplug B NCMD/DCMD, gateway/sparkplug) take it in their own form.
    const routed = c.commandRoute?.route(h.deviceId, h.command);
    if (routed) {
      this.publishRouted(h, routed);
      return;
    }
    const { id, name, args, deadline, issuedAt } = h.command;
    const payload = Buffer.from(JSON.stringify({ id, name, args, deadline, issuedAt }));
    const topic = c.templates.commands.topicFor(h.deviceId);
    if (online) {
      c.publishToDevice(topic, payload, 1).catch((err: Error) =>
        c.logger.warn({ deviceId: h.deviceId, command: id, error: err.message }, 'command publish failed'),
      );
      return;
    }
    // Bridge mode: once to the upstream broker, which holds it for the device until the deadline.
    if (h.sending || h.sentAt !== undefined) return;
    h.sending = true;
    const now = c.clock.now();
    c.publishToDevice(topic, payload, 1, deadline - now).then(
      () => {
        // The broker has it. Not `delivered`: that is the device's PUBACK, which goes to the broker.
        h.sending = false;
        h.sentAt = now;
      },
      (err: Error) => {
        c.logger.warn({ deviceId: h.deviceId, command: id, error: err.message }, 'command publish failed');
        // Too close to the deadline, or ended meanwhile: the deadline decides (`expired`).
        if (err instanceof ExpiresTooSoonError || this.held.get(CommandDelivery.key(h.deviceId, id)) !== h)
          return;
        h.retry = c.clock.setTimeout(() => {
          h.retry = undefined;
          h.sending = false;
          if (this.running) this.publishHeld(h);
        }, REPUBLISH_DELAY_MS);
      },
    );
  }

  /** A routed command has no reply: `succeeded` once the broker took it, with the topic as output. */
  private publishRouted(h: Held, r: RoutedCommand): void {
    if (h.sending) return;
    h.sending = true;
    const c = this.ctx;
    const about = { deviceId: h.deviceId, command: h.command.id, what: 'a routed command' };
    c.publishToDevice(r.topic, r.payload, r.qos).then(
      () =>
        void this.settle(
          () =>
            this.finish(h.deviceId, h.entryId, h.command, h.fields, 'succeeded', undefined, true, {
              output: { topic: r.topic },
            }),
          about,
        ),
      (err: Error) => {
        c.logger.warn({ ...about, error: err.message }, 'command publish failed');
        h.retry = c.clock.setTimeout(() => {
          h.retry = undefined;
          h.sending = false;
          if (this.running && this.held.get(CommandDelivery.key(h.deviceId, h.command.id)) === h)
            this.publishHeld(h);
        }, REPUBLISH_DELAY_MS);
      },
    );
  }

  /**
   * Bridge mode: whether the device published anything (through any gateway of
   * this Redis) at or after `since`: this gateway's unflushed sightings, then
   * the shared last-seen hash.
   */
  private async seenSince(deviceId: string, since: number): Promise<boolean> {
    const c = this.ctx;
    const local = c.ingestor.seen.get(deviceId);
    if (local !== undefined && local >= since) return true;
    const stored = await c.client.hget(c.keys.lastSeen(), deviceId);
    return stored !== null && Number(stored) >= since;
  }

  private onDeviceAck(deviceId: string, topic: string, payload: Buffer): void {
    if (topic !== this.ctx.templates.commands.topicFor(deviceId)) return;
    let id: unknown;
    try {
      id = (JSON.parse(payload.toString('utf8')) as { id?: unknown }).id;
    } catch {
      return;
    }
    const h = typeof id === 'string' ? this.held.get(CommandDelivery.key(deviceId, id)) : undefined;
    if (h) this.markDelivered(h);
  }

  private markDelivered(h: Held): void {
    if (h.acked) return;
    h.acked = true;
    const c = this.ctx;
    const expireAt = h.command.deadline + this.options.retentionMs;
    scripts(c.client)
      .beginCommand(
        c.keys.commandLedger(h.deviceId, h.command.id),
        c.clock.now(),
        h.command.deadline,
        expireAt,
        c.gatewayId,
        'deliver',
      )
      .catch((err: Error) => c.logger.warn({ error: err.message }, 'could not record delivery'));
  }

  private onResult(deviceId: string, payload: Buffer, done: Done): void {
    const c = this.ctx;
    let reply: { id?: unknown; status?: unknown; output?: unknown; errorClass?: unknown; message?: unknown };
    try {
      reply = JSON.parse(payload.toString('utf8')) as typeof reply;
    } catch {
      c.records.reject(
        {
          reason: 'malformed',
          detail: 'command result is not JSON',
          topic: c.templates.results.topicFor(deviceId),
          deviceId,
          payload,
        },
        done,
      );
      return;
    }
    const id = typeof reply.id === 'string' ? reply.id : '';
    const h = this.held.get(CommandDelivery.key(deviceId, id));
    const status =
      reply.status === 'failed' || reply.status === 'rejected'
        ? reply.status
        : reply.status === 'succeeded'
          ? 'succeeded'
          : undefined;
    if (!h || !status) {
      c.records.reject(
        {
          reason: 'unknown-command',
          detail: h
            ? 'status must be succeeded, failed or rejected'
            : `no pending command ${id} for this device here`,
          topic: c.templates.results.topicFor(deviceId),
          deviceId,
          payload,
        },
        done,
      );
      return;
    }
    this.markDelivered(h);
    const extra = {
      output: status === 'succeeded' ? reply.output : undefined,
      errorClass:
        typeof reply.errorClass === 'string' ? reply.errorClass : status === 'failed' ? 'Error' : undefined,
      message: typeof reply.message === 'string' ? reply.message : undefined,
    };
    // The PUBACK (done) only once the result is in the ledger and the results stream: until
    // then the publish is retried (both steps are idempotent), holding this connection's reads
    // as a slow append of telemetry does. Stopped meanwhile, it is never acknowledged, and the
    // device sends it again to the next gateway (or this one restarted).
    void this.settle(
      () => this.finish(deviceId, h.entryId, h.command, h.fields, status, extra.message, true, extra),
      { deviceId, command: id, what: 'a command result' },
    ).then((recorded) => {
      if (recorded) done();
    });
  }

  /**
   * Runs an idempotent finishing step until it succeeds, with capped, jittered
   * backoff; false when the service stopped first. Never rejects.
   */
  private async settle(
    step: () => Promise<void>,
    about: { deviceId: string; command: string; what: string },
  ): Promise<boolean> {
    const c = this.ctx;
    for (let attempt = 0; ; attempt++) {
      try {
        await step();
        return true;
      } catch (err) {
        c.logger.warn(
          { deviceId: about.deviceId, command: about.command, error: (err as Error).message, attempt },
          `could not record ${about.what}; retrying`,
        );
        // The entry stays pending here: a restart reads it again and finishes it.
        this.recovered.delete(c.keys.commands(about.deviceId));
      }
      if (!this.running) return false;
      await new Promise<void>((r) => c.clock.setTimeout(r, reconnectDelay(attempt, 2000)));
      if (!this.running) return false;
    }
  }

  private async onDeadline(key: string): Promise<void> {
    const h = this.held.get(key);
    if (!h) return;
    let seen = false;
    if (!h.acked && h.sentAt !== undefined) {
      // Bridge mode: the broker took it; a device seen since may have received it and acted.
      const sentAt = h.sentAt;
      seen = await this.seenSince(h.deviceId, sentAt).catch(() => true);
      if (this.held.get(key) !== h) return;
    }
    const status = h.acked || seen ? 'unknown' : 'expired';
    const message = h.acked
      ? 'the device received the command but sent no result before its deadline'
      : seen
        ? 'the device was online after the upstream broker took the command, and sent no result before its deadline'
        : 'the device did not receive the command before its deadline';
    await this.settle(
      () => this.finish(h.deviceId, h.entryId, h.command, h.fields, status, message, h.acked),
      { deviceId: h.deviceId, command: h.command.id, what: `an ${status} command` },
    );
  }

  /**
   * Fixes the terminal result in the ledger (first wins), publishes it once,
   * then acknowledges the entry (not when `ack` is false: the sweep, whose
   * entry may be pending at another gateway). Safe to run again after a failure.
   */
  private async finish(
    deviceId: string,
    entryId: string,
    command: Command,
    fields: string[],
    status: 'succeeded' | 'failed' | 'rejected' | 'expired' | 'unknown',
    message: string | undefined,
    delivered: boolean,
    extra: { output?: unknown; errorClass?: string; deliveredAt?: number; attempts?: number } = {},
    ack = true,
  ): Promise<void> {
    const c = this.ctx;
    const key = CommandDelivery.key(deviceId, command.id);
    const h = this.held.get(key);
    if (h) {
      c.clock.clearTimeout(h.timer);
      if (h.retry) c.clock.clearTimeout(h.retry);
    }
    this.held.delete(key);
    const now = c.clock.now();
    const expireAt = command.deadline + this.options.retentionMs;
    const encoded = resultFields({
      commandId: command.id,
      deviceId,
      status,
      name: command.name,
      correlationId: command.correlationId,
      entryId,
      issuedAt: command.issuedAt,
      deliveredAt: extra.deliveredAt ?? (delivered ? now : undefined),
      finishedAt: now,
      attempts: extra.attempts ?? (delivered ? 1 : 0),
      output: extra.output,
      errorClass: extra.errorClass,
      message,
      version: 1,
    });
    const [, text] = await scripts(c.client).finishCommand(
      c.keys.commandLedger(deviceId, command.id),
      expireAt,
      status,
      JSON.stringify(encoded),
      delivered ? 1 : 0,
    );
    const stored = text ? (JSON.parse(text) as string[]) : encoded;
    await this.conclude(deviceId, entryId, command, stored, fields);
    if (ack) await c.client.xack(c.keys.commands(deviceId), COMMAND_GROUP, entryId);
  }

  /**
   * Publishes a command's fixed result, at most once each, to the dead-letter
   * stream (when `failed`, as the agent does: docs/commands.md) and to the
   * results stream. Run wherever a terminal ledger is met, before any XACK.
   */
  private async conclude(
    deviceId: string,
    entryId: string,
    command: Command,
    stored: string[],
    fields: string[],
  ): Promise<void> {
    const c = this.ctx;
    const run = scripts(c.client);
    const ttlMs = Math.max(1000, command.deadline + this.options.retentionMs - c.clock.now());
    let result: CommandResult;
    try {
      result = decodeResult(stored);
    } catch {
      c.logger.warn(
        { deviceId, command: command.id },
        'stored command result is unreadable; not republished',
      );
      return;
    }
    if (result.status === 'failed') {
      const stream = c.keys.commands(deviceId);
      const added = await publishDeadLetter(run, c.keys, {
        deviceId,
        stream,
        entryId,
        fields,
        result,
        key: command.id,
        ttlMs,
      });
      if (added) this.deadLetters.inc();
    }
    const [added] = await run.publishOnce(
      c.keys.results(),
      c.keys.publishedMarker(c.keys.results(), deviceId, command.id),
      ttlMs,
      0,
      ...stored,
    );
    if (added === 1) this.results.inc({ status: result.status });
  }

  /**
   * Ends commands nobody will deliver, for every device with a command stream
   * (the fleet set: agents and MQTT devices):
   * - past their deadline and still `queued` (the device never came to a
   *   gateway, or the agent never came back): `expired`, only while the
   *   ledger is `queued`, in one script step (expireQueuedCommand-2.lua);
   * - MQTT devices: `delivered` and past the deadline by a grace period
   *   (the gateway that held them is gone): `unknown`;
   * - agents: `delivered` or `running` and past the deadline by
   *   `agentResultGraceMs` (the agent is gone): `unknown`. finishCommand is
   *   first-wins, so an agent that comes back later reports this result and
   *   never runs the command (beginCommand sees it ended);
   * - terminal, whatever the device: the result is published (once) in case
   *   the step between ledger and results stream failed.
   * Bounded per tick (SWEEP_DEVICES_PER_TICK devices by SSCAN, SWEEP_ENTRIES
   * entries each); one gateway at a time sweeps (a lease), and every step is
   * safe if two do.
   */
  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    const c = this.ctx;
    try {
      if (!(await this.holdSweepLease())) return;
      let swept = 0;
      do {
        const [next, devices] = await c.client.sscan(
          c.keys.fleet(),
          this.fleetCursor,
          'COUNT',
          Math.min(100, SWEEP_DEVICES_PER_TICK),
        );
        this.fleetCursor = next;
        if (devices.length === 0) continue;
        const mqtt = await c.client.smismember(c.keys.mqttDevices(), ...devices);
        for (const [i, deviceId] of devices.entries()) {
          if (!this.running) return;
          await this.sweepDevice(deviceId, mqtt[i] === 1);
        }
        swept += devices.length;
      } while (this.fleetCursor !== '0' && swept < SWEEP_DEVICES_PER_TICK && this.running);
    } catch (err) {
      c.logger.warn({ error: (err as Error).message }, 'command sweep failed; retrying');
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * SET NX with an expiry of a few sweep intervals, renewed by its holder. The
   * renewal is not atomic with the check and need not be: the lease only keeps
   * several gateways from doing the same work.
   */
  private async holdSweepLease(): Promise<boolean> {
    const c = this.ctx;
    const key = c.keys.commandSweepLease();
    const ttl = Math.max(1000, 3 * this.options.sweepIntervalMs);
    if ((await c.client.set(key, c.gatewayId, 'PX', ttl, 'NX')) === 'OK') return true;
    if ((await c.client.get(key)) !== c.gatewayId) return false;
    await c.client.pexpire(key, ttl);
    return true;
  }

  private async sweepDevice(deviceId: string, mqtt: boolean): Promise<void> {
    const c = this.ctx;
    const cursor = this.sweepCursor.get(deviceId) ?? '-';
    const entries = await c.client.xrange(c.keys.commands(deviceId), cursor, '+', 'COUNT', SWEEP_ENTRIES);
    const now = c.clock.now();
    let settled = true;
    for (const [entryId, fields] of entries) {
      let command: Command | undefined;
      try {
        command = decodeCommand(fields);
      } catch {
        // Malformed: its consumer rejects it (the agent) or acknowledges it (a gateway).
        command = undefined;
      }
      const open = command ? await this.sweepEntry(deviceId, mqtt, entryId, fields, command, now) : false;
      // The cursor moves past entries that are settled, so each sweep reads only the open tail.
      if (open) settled = false;
      if (settled) this.sweepCursor.set(deviceId, `(${entryId}`);
    }
  }

  /** One entry of the sweep; true while the command is still open (someone may yet end it). */
  private async sweepEntry(
    deviceId: string,
    mqtt: boolean,
    entryId: string,
    fields: string[],
    command: Command,
    now: number,
  ): Promise<boolean> {
    const c = this.ctx;
    const ledger = c.keys.commandLedger(deviceId, command.id);
    const [st, stored, deliveredAt, attempts] = await c.client.hmget(ledger, 'st', 'r', 'td', 'at');
    if (st && isTerminal(st)) {
      if (stored) await this.conclude(deviceId, entryId, command, JSON.parse(stored) as string[], fields);
      return false;
    }
    if (st !== 'queued' && st !== 'delivered' && st !== 'running') return false;
    if (this.held.has(CommandDelivery.key(deviceId, command.id))) return true;
    if (st === 'queued' && command.deadline <= now) {
      const encoded = resultFields({
        commandId: command.id,
        deviceId,
        status: 'expired',
        name: command.name,
        correlationId: command.correlationId,
        entryId,
        issuedAt: command.issuedAt,
        finishedAt: now,
        attempts: 0,
        message: mqtt
          ? 'the device did not come back before the deadline'
          : 'the agent did not read the command before its deadline; not executed',
        version: 1,
      });
      const [ended, status] = await scripts(c.client).expireQueuedCommand(
        ledger,
        c.keys.commands(deviceId),
        now,
        command.deadline,
        command.deadline + this.options.retentionMs,
        JSON.stringify(encoded),
        mqtt ? '' : entryId,
      );
      if (ended === 1) {
        await this.conclude(deviceId, entryId, command, encoded, fields);
        return false;
      }
      // The device recorded it meanwhile (delivered or running: it decides), or it ended: next sweep.
      // An agent that read it (its group did; the ledger is `queued` while a read-only command runs)
      // received it: the grace rule below applies, as for `delivered`.
      if (status !== 'received') return true;
    }
    if (!mqtt && command.deadline + this.options.agentResultGraceMs <= now) {
      // delivered, running or read: the agent received it and never reported (ack false: the entry is the agent's).
      await this.finish(
        deviceId,
        entryId,
        command,
        fields,
        'unknown',
        `the agent received it and reported no result within ${this.options.agentResultGraceMs} ms after its deadline; it may or may not have taken effect`,
        true,
        {
          errorClass: 'AgentGone',
          deliveredAt: Number(deliveredAt) || undefined,
          attempts: Number(attempts) || 0,
        },
        false,
      );
      return false;
    }
    if (mqtt && st === 'delivered' && command.deadline + ORPHAN_GRACE_MS <= now) {
      await this.finish(
        deviceId,
        entryId,
        command,
        fields,
        'unknown',
        'the gateway delivering it went away before a result',
        true,
        {},
        false,
      );
      return false;
    }
    return true;
  }
}
