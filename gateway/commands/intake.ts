/**
 * What devices send back about commands: the PUBACK of a command message
 * (the device received it: `delivered` in the ledger) and the reply on the
 * result topic, which becomes the command's one terminal result. A reply that
 * is not a JSON object, names no command held here or no device status is
 * rejected with its reason (docs/guarantees.md §5), never dropped.
 *
 * The reply's PUBACK (`done`) goes out only once the result is in the ledger
 * and the results stream: until then the recording is retried (every step is
 * idempotent), holding this connection's reads as a slow append of telemetry
 * does. Stopped meanwhile, it is never acknowledged, and the device sends it
 * again to the next gateway (or this one restarted).
 */
import { decodeResultMessage, type ResultReply } from '#shared/commands/mqtt-messages.js';
import { beginCommand } from '#shared/commands/scripts.js';
import type { Done } from '../ingest.js';
import type { GatewayContext } from '../services.js';
import type { CommandEnding } from './ending.js';
import type { Held, HeldCommands } from './held.js';
import type { CommandTransport } from './transport.js';

export class CommandIntake {
  constructor(
    private readonly ctx: GatewayContext,
    private readonly held: HeldCommands,
    private readonly ending: CommandEnding,
    private readonly transport: CommandTransport,
    private readonly loop: { running(): boolean; failed(deviceId: string): void },
  ) {}

  /** A device acknowledged (PUBACK) a message: if it was a command held here, it is delivered. */
  onAck(deviceId: string, topic: string, payload: Buffer): void {
    const id = this.transport.ackedCommand(deviceId, topic, payload);
    const h = id === undefined ? undefined : this.held.get(deviceId, id);
    if (h) this.markDelivered(h);
  }

  /** Records receipt in the ledger once (beginCommand, mode deliver). */
  markDelivered(h: Held): void {
    if (h.acked) return;
    h.acked = true;
    const c = this.ctx;
    beginCommand(c.client, {
      ledger: c.keys.commandLedger(h.deviceId, h.command.id),
      now: c.clock.now(),
      deadline: h.command.deadline,
      expireAt: this.ending.expireAt(h.command),
      consumer: c.gatewayId,
      mode: 'deliver',
    }).catch((err: Error) => c.logger.warn({ error: err.message }, 'could not record delivery'));
  }

  /** A device's reply on its result topic. */
  onResult(deviceId: string, payload: Buffer, done: Done): void {
    const c = this.ctx;
    const topic = c.templates.results.topicFor(deviceId);
    let reply: ResultReply;
    try {
      reply = decodeResultMessage(payload);
    } catch (err) {
      c.records.reject(
        { reason: 'malformed', detail: (err as Error).message, topic, deviceId, payload },
        done,
      );
      return;
    }
    const { id, status } = reply;
    const h = this.held.get(deviceId, id);
    if (!h || !status) {
      const detail = h
        ? 'status must be succeeded, failed or rejected'
        : `no pending command ${id} for this device here`;
      c.records.reject({ reason: 'unknown-command', detail, topic, deviceId, payload }, done);
      return;
    }
    this.markDelivered(h);
    const extra = { output: reply.output, errorClass: reply.errorClass };
    void this.ending
      .settle(
        () => this.ending.finish(h, status, reply.message, true, extra),
        { deviceId, command: id, what: 'a command result' },
        { running: () => this.loop.running(), failed: () => this.loop.failed(deviceId) },
      )
      .then((recorded) => {
        if (recorded) done();
      });
  }
}
