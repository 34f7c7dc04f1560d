/**
 * Command delivery to MQTT devices: the gateway side of docs/guarantees.md §2
 * for devices that run no agent. Read top to bottom, a command goes:
 *
 *   doorbell.ts, poll.ts which device streams to read now
 *   delivery.ts (here)   read them as the consumer group `gateways`
 *                        (shared/streams/group-reader.ts), hold each command
 *                        (held.ts) and publish it (transport.ts) before its deadline
 *   intake.ts            the device's PUBACK (`delivered`) and reply (the result)
 *   ending.ts            the one terminal result, through shared/commands/conclude.ts
 *   sweeper.ts           commands nobody will deliver, past their deadline
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
 * publish through a gateway) after the broker took the command, else `expired`.
 *
 * A terminal ledger is never acknowledged (XACK, PUBACK) before its result is
 * in the results stream: the publish is idempotent (a marker per command), so
 * it is simply run again wherever a terminal ledger is met (a redelivered
 * entry, the sweep), and a result whose recording failed is retried before
 * the device's PUBACK goes out. `failed` results are dead-lettered as the
 * agent's are: both end commands through the same module.
 */
import { type Command, decodeCommand, isTerminal } from '#shared/commands/codec.js';
import { registerDevice } from '#shared/commands/send.js';
import { GroupReader } from '#shared/streams/group-reader.js';
import { ExpiresTooSoonError } from '../bridge.js';
import type { DeviceReach, GatewayContext, GatewayService, RoutedCommand } from '../services.js';
import { Doorbell } from './doorbell.js';
import { CommandEnding, type ReadCommand } from './ending.js';
import { type Held, HeldCommands } from './held.js';
import { CommandIntake } from './intake.js';
import {
  COMMAND_GROUP,
  type CommandOptions,
  DEFAULT_COMMAND_OPTIONS,
  READ_COUNT,
  REPUBLISH_DELAY_MS,
} from './options.js';
import { FallbackPoll } from './poll.js';
import { CommandSweeper } from './sweeper.js';
import { type CommandTransport, mqttJsonTransport } from './transport.js';

export class CommandDelivery implements GatewayService {
  readonly name = 'commands';
  private readonly held: HeldCommands;
  private readonly ending: CommandEnding;
  private readonly intake: CommandIntake;
  private readonly sweeper: CommandSweeper;
  private readonly doorbell: Doorbell | undefined;
  private readonly transport: CommandTransport;
  private readonly registered = new Set<string>();
  /** One group reader per device stream read here; it knows whether own pending entries were read. */
  private readonly readers = new Map<string, GroupReader>();
  /** Reads of one device's command stream in progress; `again` when another was asked for meanwhile. */
  private readonly reads = new Map<string, { again: boolean; done: Promise<void> }>();
  private readonly poll: FallbackPoll;
  private running = false;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly reach: DeviceReach,
    options: CommandOptions = DEFAULT_COMMAND_OPTIONS,
    transport?: CommandTransport,
  ) {
    this.transport = transport ?? mqttJsonTransport(ctx);
    this.held = new HeldCommands(ctx.clock);
    this.ending = new CommandEnding(ctx, options, this.held);
    const loop = {
      running: () => this.running,
      // The entry stays pending here: the next read (or a restart) reads it again and finishes it.
      failed: (deviceId: string) => this.readers.get(deviceId)?.rewind(),
    };
    this.intake = new CommandIntake(ctx, this.held, this.ending, this.transport, loop);
    this.sweeper = new CommandSweeper(ctx, options, this.held, this.ending, () => this.running);
    this.doorbell = options.doorbell ? new Doorbell(ctx, (devices) => this.rung(devices)) : undefined;
    this.poll = new FallbackPoll({
      clock: ctx.clock,
      logger: ctx.logger,
      // Broker mode: its connected devices; bridge mode: every MQTT device.
      devices: () => this.reach.online() ?? this.ctx.client.smembers(this.ctx.keys.mqttDevices()),
      read: (deviceId) => this.read(deviceId),
      cycleMs: () => (this.doorbell?.listening ? options.doorbellPollIntervalMs : options.pollIntervalMs),
    });
  }

  async start(): Promise<void> {
    const c = this.ctx;
    c.ingestor.setResultHandler((deviceId, payload, done) => this.intake.onResult(deviceId, payload, done));
    c.ingestor.onDevice = (deviceId) => this.register(deviceId);
    this.reach.onChange((deviceId, online) => {
      if (online) {
        this.register(deviceId);
        for (const h of this.held.ofDevice(deviceId)) this.publishHeld(h);
        // Commands queued while it was away (their doorbell rang when no gateway could reach it).
        this.readSoon(deviceId);
      }
    });
    this.reach.onAck((deviceId, topic, payload) => this.intake.onAck(deviceId, topic, payload));
    this.running = true;
    await this.doorbell?.start();
    this.poll.start();
    this.sweeper.start();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.doorbell?.stop();
    this.poll.stop();
    this.sweeper.stop();
    // Held entries stay in this consumer's pending list: a restart with the same gateway.id reads them again.
    this.held.releaseAll();
    this.ctx.ingestor.setResultHandler(undefined);
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

  /** The doorbell named these devices: read the streams of those this gateway can reach. */
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
        this.readers.get(deviceId)?.rewind();
        throw err;
      } finally {
        this.reads.delete(deviceId);
      }
    })();
    return state.done;
  }

  private async readOnce(deviceId: string): Promise<void> {
    const reader = this.readerOf(deviceId);
    // First our own pending entries (read in a previous life of this gateway), then new ones.
    while (this.running) {
      const read = await reader.read();
      for (const [entryId, fields] of read.entries) {
        // Deleted (trimmed) while pending: nothing to deliver.
        if (fields === null) {
          await reader.ack(entryId);
          continue;
        }
        const h = await this.take(reader, deviceId, entryId, fields);
        if (h) this.publishHeld(h);
      }
      if (read.source === 'new' && read.entries.length < READ_COUNT) return;
    }
  }

  /** The gateways' group reader of one device's command stream (made on first use). */
  private readerOf(deviceId: string): GroupReader {
    let reader = this.readers.get(deviceId);
    if (!reader) {
      reader = new GroupReader(this.ctx.client, this.ctx.keys.commands(deviceId), {
        group: COMMAND_GROUP,
        consumer: this.ctx.gatewayId,
        count: READ_COUNT,
      });
      this.readers.set(deviceId, reader);
    }
    return reader;
  }

  /** Decides what a read entry is: malformed (acked), ended (republished), expired, or held. */
  private async take(
    reader: GroupReader,
    deviceId: string,
    entryId: string,
    fields: string[],
  ): Promise<Held | undefined> {
    const c = this.ctx;
    let command: Command;
    try {
      command = decodeCommand(fields);
    } catch (err) {
      c.logger.warn(
        { deviceId, entryId, error: (err as Error).message },
        'malformed command entry acknowledged',
      );
      await reader.ack(entryId);
      return undefined;
    }
    if (this.held.has(deviceId, command.id)) return undefined;
    const r: ReadCommand = { deviceId, entryId, command, fields };
    const ledger = await this.ending.ledger(r);
    if (!ledger) {
      await reader.ack(entryId);
      return undefined;
    }
    if (ledger.stored) {
      // Already ended, perhaps by a life of this gateway that died between the ledger and the
      // results stream: publish it (once) before the entry is acknowledged.
      await this.ending.republish(r, ledger.stored, true);
      return undefined;
    }
    if (isTerminal(ledger.status)) {
      // Terminal without its copy: nothing to publish; acknowledge.
      await reader.ack(entryId);
      return undefined;
    }
    const delivered = ledger.status === 'delivered';
    if (command.deadline <= c.clock.now()) {
      await this.ending.finish(r, 'expired', 'deadline passed before the device could receive it', delivered);
      return undefined;
    }
    return this.held.hold({ ...r, acked: delivered }, (h) => void this.onDeadline(h));
  }

  /** Publishes one held command if it is unacknowledged, its device reachable, and its deadline ahead. */
  private publishHeld(h: Held): void {
    const c = this.ctx;
    if (h.acked) return;
    const online = this.reach.online();
    if (online && !online.has(h.deviceId)) return;
    // Never after the deadline [docs/guarantees.md §2: expired commands are never executed].
    if (h.command.deadline <= c.clock.now()) return;
    // A protocol whose devices take commands in their own form and answer none (Sparkplug B
    // NCMD/DCMD, gateway/sparkplug) plugs in here, before the default transport.
    const routed = c.commandRoute?.route(h.deviceId, h.command);
    if (routed) {
      this.publishRouted(h, routed);
      return;
    }
    const id = h.command.id;
    if (online) {
      this.transport
        .send(h.deviceId, h.command)
        .catch((err: Error) =>
          c.logger.warn({ deviceId: h.deviceId, command: id, error: err.message }, 'command publish failed'),
        );
      return;
    }
    // Bridge mode: once to the upstream broker, which holds it for the device until the deadline.
    if (h.sending || h.sentAt !== undefined) return;
    h.sending = true;
    const now = c.clock.now();
    this.transport.send(h.deviceId, h.command, h.command.deadline - now).then(
      () => {
        // The broker has it. Not `delivered`: that is the device's PUBACK, which goes to the broker.
        h.sending = false;
        h.sentAt = now;
      },
      (err: Error) => {
        c.logger.warn({ deviceId: h.deviceId, command: id, error: err.message }, 'command publish failed');
        // Too close to the deadline, or ended meanwhile: the deadline decides (`expired`).
        if (err instanceof ExpiresTooSoonError || !this.held.holds(h)) return;
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
        void this.ending.settle(
          () => this.ending.finish(h, 'succeeded', undefined, true, { output: { topic: r.topic } }),
          about,
          { running: () => this.running, failed: () => this.readers.get(h.deviceId)?.rewind() },
        ),
      (err: Error) => {
        c.logger.warn({ ...about, error: err.message }, 'command publish failed');
        h.retry = c.clock.setTimeout(() => {
          h.retry = undefined;
          h.sending = false;
          if (this.running && this.held.holds(h)) this.publishHeld(h);
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

  /** No reply by the deadline: `unknown` if the device had it (or may have), else `expired`. */
  private async onDeadline(h: Held): Promise<void> {
    if (!this.held.holds(h)) return;
    let seen = false;
    if (!h.acked && h.sentAt !== undefined) {
      // Bridge mode: the broker took it; a device seen since may have received it and acted.
      seen = await this.seenSince(h.deviceId, h.sentAt).catch(() => true);
      if (!this.held.holds(h)) return;
    }
    const status = h.acked || seen ? 'unknown' : 'expired';
    const message = h.acked
      ? 'the device received the command but sent no result before its deadline'
      : seen
        ? 'the device was online after the upstream broker took the command, and sent no result before its deadline'
        : 'the device did not receive the command before its deadline';
    await this.ending.settle(
      () => this.ending.finish(h, status, message, h.acked),
      { deviceId: h.deviceId, command: h.command.id, what: `an ${status} command` },
      { running: () => this.running, failed: () => this.readers.get(h.deviceId)?.rewind() },
    );
  }
}
