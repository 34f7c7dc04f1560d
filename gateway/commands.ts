/**
 * Command delivery to MQTT devices: the gateway side of ARCHITECTURE
 * guarantee 2 for devices that run no agent.
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
 * back; in bridge mode the upstream broker holds them, and the payload carries
 * the deadline for the firmware to check. With no reply by the deadline the
 * command ends `expired` (the device never acknowledged it) or `unknown` (it
 * did, and may have acted). A sweeper ends commands of devices no gateway
 * reads (offline, or served by a gateway that died) the same way, so no
 * command hangs while any gateway runs.
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
import { type Command, decodeCommand, decodeResult, resultFields } from '#shared/commands/codec.js';
import { DEFAULT_LEDGER_RETENTION_MS, duplicateClient, registerDevice } from '#shared/commands/send.js';
import { Counter } from '#shared/metrics.js';
import type { RedisClient } from '#shared/redis/connect.js';
import { scripts } from '#shared/redis/scripts.js';
import type { GatewayContext, GatewayService } from './gateway.js';
import type { Done } from './ingest.js';

export const COMMAND_GROUP = 'gateways';
/** After its deadline, how long a `delivered` command waits for the gateway holding it before the sweeper ends it. */
const ORPHAN_GRACE_MS = 5000;
/** How long one doorbell read blocks; it wakes at once when a command is queued, so this only bounds idle round trips. */
const DOORBELL_BLOCK_MS = 5000;
/** Entries a command-stream read takes at once; a device with more is read again at once. */
const READ_COUNT = 32;

interface Held {
  readonly deviceId: string;
  readonly entryId: string;
  readonly command: Command;
  acked: boolean;
  timer: NodeJS.Timeout;
}

/** Which devices this gateway can reach now (broker mode), and when that changes. */
export interface DeviceReach {
  /** Undefined in bridge mode: the upstream broker decides. */
  online(): ReadonlySet<string> | undefined;
  onChange(listener: (deviceId: string, online: boolean) => void): void;
  /** The device acknowledged (PUBACK) a message on a topic. */
  onAck(listener: (deviceId: string, topic: string, payload: Buffer) => void): void;
}

export interface CommandOptions {
  /** Fallback poll of every reachable device's command stream (the doorbell is the fast path). */
  pollIntervalMs: number;
  sweepIntervalMs: number;
  retentionMs: number;
  /** Block on the doorbell stream; off, commands wait for the fallback poll. */
  doorbell: boolean;
}

export const DEFAULT_COMMAND_OPTIONS: CommandOptions = {
  pollIntervalMs: 2000,
  sweepIntervalMs: 1000,
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
  private readonly sweepCursor = new Map<string, string>();
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

  constructor(
    private readonly ctx: GatewayContext,
    private readonly reach: DeviceReach,
    private readonly options: CommandOptions = DEFAULT_COMMAND_OPTIONS,
  ) {
    this.results = new Counter({
      name: 'gateway_command_results_total',
      help: 'Terminal results of commands to MQTT devices, by status',
      labelNames: ['status'],
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
    for (const h of this.held.values()) c.clock.clearTimeout(h.timer);
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
    const status = await c.client.hget(c.keys.commandLedger(deviceId, command.id), 'st');
    if (status && ['succeeded', 'failed', 'rejected', 'expired', 'unknown'].includes(status)) {
      await c.client.xack(c.keys.commands(deviceId), COMMAND_GROUP, entryId);
      return undefined;
    }
    if (command.deadline <= now) {
      await this.finish(
        deviceId,
        entryId,
        command,
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
    // Never after the deadline [ARCHITECTURE guarantee 2: expired commands are never executed].
    if (h.command.deadline <= c.clock.now()) return;
    const { id, name, args, deadline, issuedAt } = h.command;
    const payload = Buffer.from(JSON.stringify({ id, name, args, deadline, issuedAt }));
    c.publishToDevice(c.templates.commands.topicFor(h.deviceId), payload, 1).then(
      () => {
        // In bridge mode the upstream broker has it: that is as far as this gateway can see.
        if (!this.reach.online()) this.markDelivered(h);
      },
      (err: Error) =>
        c.logger.warn({ deviceId: h.deviceId, command: id, error: err.message }, 'command publish failed'),
    );
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
    this.finish(deviceId, h.entryId, h.command, status, extra.message, true, extra).then(
      done,
      (err: Error) => {
        c.logger.warn({ deviceId, command: id, error: err.message }, 'could not record a command result');
        // Not acknowledged: the device sends it again.
        done();
      },
    );
  }

  private async onDeadline(key: string): Promise<void> {
    const h = this.held.get(key);
    if (!h) return;
    const status = h.acked ? 'unknown' : 'expired';
    const message = h.acked
      ? 'the device received the command but sent no result before its deadline'
      : 'the device did not receive the command before its deadline';
    await this.finish(h.deviceId, h.entryId, h.command, status, message, h.acked).catch((err: Error) =>
      this.ctx.logger.warn({ error: err.message }, 'could not record an expired command'),
    );
  }

  /** Fixes the terminal result in the ledger (first wins), publishes it once, then acknowledges the entry. */
  private async finish(
    deviceId: string,
    entryId: string | undefined,
    command: Command,
    status: 'succeeded' | 'failed' | 'rejected' | 'expired' | 'unknown',
    message: string | undefined,
    delivered: boolean,
    extra: { output?: unknown; errorClass?: string } = {},
  ): Promise<void> {
    const c = this.ctx;
    const key = CommandDelivery.key(deviceId, command.id);
    const h = this.held.get(key);
    if (h) c.clock.clearTimeout(h.timer);
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
      deliveredAt: delivered ? now : undefined,
      finishedAt: now,
      attempts: delivered ? 1 : 0,
      output: extra.output,
      errorClass: extra.errorClass,
      message,
      version: 1,
    });
    const run = scripts(c.client);
    const [, text] = await run.finishCommand(
      c.keys.commandLedger(deviceId, command.id),
      expireAt,
      status,
      JSON.stringify(encoded),
      delivered ? 1 : 0,
    );
    const stored = text ? (JSON.parse(text) as string[]) : encoded;
    const [added] = await run.publishOnce(
      c.keys.results(),
      c.keys.publishedMarker(c.keys.results(), deviceId, command.id),
      Math.max(1000, expireAt - now),
      0,
      ...stored,
    );
    if (added === 1) this.results.inc({ status: decodeResult(stored).status });
    if (entryId) await c.client.xack(c.keys.commands(deviceId), COMMAND_GROUP, entryId);
  }

  /**
   * Ends commands nobody will deliver: past their deadline and still `queued`
   * (the device never came to a gateway), or `delivered` and past the deadline
   * by a grace period (the gateway that held them is gone).
   */
  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    const c = this.ctx;
    try {
      const devices = await c.client.smembers(c.keys.mqttDevices());
      const now = c.clock.now();
      for (const deviceId of devices) {
        const cursor = this.sweepCursor.get(deviceId) ?? '-';
        const entries = await c.client.xrange(c.keys.commands(deviceId), cursor, '+', 'COUNT', 100);
        let settled = true;
        for (const [entryId, fields] of entries) {
          let command: Command | undefined;
          try {
            command = decodeCommand(fields);
          } catch {
            command = undefined;
          }
          const st = command ? await c.client.hget(c.keys.commandLedger(deviceId, command.id), 'st') : null;
          const open = st === 'queued' || st === 'delivered' || st === 'running';
          if (command && open && !this.held.has(CommandDelivery.key(deviceId, command.id))) {
            if (st === 'queued' && command.deadline <= now) {
              await this.finish(
                deviceId,
                undefined,
                command,
                'expired',
                'the device did not come back before the deadline',
                false,
              );
              continue;
            }
            if (st === 'delivered' && command.deadline + ORPHAN_GRACE_MS <= now) {
              await this.finish(
                deviceId,
                undefined,
                command,
                'unknown',
                'the gateway delivering it went away before a result',
                true,
              );
              continue;
            }
          }
          // The cursor moves past entries that are settled, so each sweep reads only the open tail.
          if (open) settled = false;
          if (settled) this.sweepCursor.set(deviceId, `(${entryId}`);
        }
      }
    } catch (err) {
      c.logger.warn({ error: (err as Error).message }, 'command sweep failed; retrying');
    } finally {
      this.sweeping = false;
    }
  }
}
