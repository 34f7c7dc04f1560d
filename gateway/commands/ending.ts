/**
 * How the gateway ends a command: it builds the terminal result (one version
 * constant, COMMAND_VERSION, as the agent's) and hands it to the shared
 * conclude module (shared/commands/conclude.ts: ledger first-wins, dead letter
 * and result published once each, results capped at commands.resultsMaxLen,
 * then XACK), exactly as the agent's worker does. Every step is idempotent, so
 * a failed one is simply run again (settle).
 */
import { COMMAND_VERSION, type Command, resultFields, type TerminalStatus } from '#shared/commands/codec.js';
import { type CommandEntry, Concluder, type Conclusion } from '#shared/commands/conclude.js';
import { decodeLedger, LEDGER_READ_FIELDS, type LedgerView, ledgerHash } from '#shared/commands/ledger.js';
import { Counter } from '#shared/metrics.js';
import { reconnectDelay } from '#shared/redis/connect.js';
import { durabilityOf } from '#shared/telemetry/producer-options.js';
import type { GatewayContext } from '../services.js';
import type { HeldCommands } from './held.js';
import { COMMAND_GROUP, type CommandOptions } from './options.js';

/** A command as read from its device's stream. */
export interface ReadCommand {
  readonly deviceId: string;
  readonly entryId: string;
  readonly command: Command;
  readonly fields: string[];
}

export interface EndDetails {
  output?: unknown;
  errorClass?: string;
  deliveredAt?: number;
  attempts?: number;
}

export class CommandEnding {
  private readonly concluder: Concluder;
  private readonly results: Counter<'status'>;
  private readonly deadLetters: Counter;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly options: CommandOptions,
    private readonly held: HeldCommands,
  ) {
    this.concluder = new Concluder({
      client: ctx.client,
      keys: ctx.keys,
      clock: ctx.clock,
      group: COMMAND_GROUP,
      resultsMaxLen: options.resultsMaxLen,
      durability: durabilityOf(ctx.config),
    });
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

  /** The command's ledger; undefined (logged) when its stored result is unreadable: nothing to republish. */
  async ledger(r: ReadCommand): Promise<LedgerView | undefined> {
    const c = this.ctx;
    const read = await c.client.hmget(c.keys.commandLedger(r.deviceId, r.command.id), ...LEDGER_READ_FIELDS);
    try {
      return decodeLedger(ledgerHash(read));
    } catch {
      c.logger.warn(
        { deviceId: r.deviceId, command: r.command.id },
        'stored command result is unreadable; not republished',
      );
      return undefined;
    }
  }

  expireAt(command: Command): number {
    return command.deadline + this.options.retentionMs;
  }

  /** The result's flat fields. `delivered`: the device had it (delivery time now unless known, one attempt). */
  result(
    c: ReadCommand,
    status: TerminalStatus,
    message: string | undefined,
    delivered: boolean,
    extra: EndDetails = {},
  ): string[] {
    const now = this.ctx.clock.now();
    return resultFields({
      commandId: c.command.id,
      deviceId: c.deviceId,
      status,
      name: c.command.name,
      correlationId: c.command.correlationId,
      entryId: c.entryId,
      issuedAt: c.command.issuedAt,
      deliveredAt: extra.deliveredAt ?? (delivered ? now : undefined),
      finishedAt: now,
      attempts: extra.attempts ?? (delivered ? 1 : 0),
      output: extra.output,
      errorClass: extra.errorClass,
      message,
      version: COMMAND_VERSION,
    });
  }

  /**
   * Ends a command: stops holding it, fixes the result (first wins), publishes it once, then
   * acknowledges the entry (not when `ack` is false: the sweep, whose entry may be pending at
   * another gateway). Safe to run again after a failure.
   */
  async finish(
    c: ReadCommand,
    status: TerminalStatus,
    message: string | undefined,
    delivered: boolean,
    extra: EndDetails = {},
    ack = true,
  ): Promise<void> {
    this.held.release(c.deviceId, c.command.id);
    this.count(
      await this.concluder.conclude(this.entry(c, ack), this.result(c, status, message, delivered, extra)),
    );
  }

  /** Publishes a result already fixed in the ledger (`stored`), once each, then acks when `ack`. */
  async republish(c: ReadCommand, stored: string[], ack: boolean): Promise<void> {
    this.count(await this.concluder.republish(this.entry(c, ack), stored));
  }

  /**
   * Runs an idempotent finishing step until it succeeds, with capped, jittered
   * backoff; false when `running()` turned false first. Never rejects.
   */
  async settle(
    step: () => Promise<void>,
    about: { deviceId: string; command: string; what: string },
    loop: { running(): boolean; failed(): void },
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
        loop.failed();
      }
      if (!loop.running()) return false;
      await new Promise<void>((r) => c.clock.setTimeout(r, reconnectDelay(attempt, 2000)));
      if (!loop.running()) return false;
    }
  }

  private entry(c: ReadCommand, ack: boolean): CommandEntry {
    return {
      deviceId: c.deviceId,
      entryId: c.entryId,
      fields: c.fields,
      commandId: c.command.id,
      expireAt: this.expireAt(c.command),
      ack,
    };
  }

  private count(c: Conclusion): void {
    if (c.deadLetterAdded) this.deadLetters.inc();
    if (c.resultAdded) this.results.inc({ status: c.status });
  }
}
