/**
 * Ends commands nobody will deliver, for every device with a command stream
 * (the fleet set: agents and MQTT devices):
 * - past their deadline and still `queued` (the device never came to a
 *   gateway, or the agent never came back): `expired`, only while the
 *   ledger is `queued`, in one script step (expireQueuedCommand-2.lua), so
 *   the sweeper and the device never both decide;
 * - MQTT devices: `delivered` and past the deadline by a grace period
 *   (the gateway that held them is gone): `unknown`;
 * - agents: `delivered` or `running` and past the deadline by
 *   `agentResultGraceMs` (the agent is gone): `unknown`. The ledger is
 *   first-wins, so an agent that comes back later reports this result and
 *   never runs the command (beginCommand sees it ended);
 * - terminal, whatever the device: the result is published (once) in case
 *   the step between ledger and results stream failed.
 * Nothing here acknowledges an entry: it may be pending at another consumer.
 * Bounded per tick (SWEEP_DEVICES_PER_TICK devices by SSCAN, SWEEP_ENTRIES
 * entries each); one gateway at a time sweeps (a lease), and every step is
 * safe if two do.
 */
import { type Command, decodeCommand } from '#shared/commands/codec.js';
import { expireQueuedCommand } from '#shared/commands/scripts.js';
import type { GatewayContext } from '../services.js';
import type { CommandEnding, ReadCommand } from './ending.js';
import type { HeldCommands } from './held.js';
import { type CommandOptions, ORPHAN_GRACE_MS, SWEEP_DEVICES_PER_TICK, SWEEP_ENTRIES } from './options.js';

export class CommandSweeper {
  /** Per device, where the sweep's next read of its command stream starts (bounded by the fleet). */
  private readonly cursors = new Map<string, string>();
  /** SSCAN cursor of the sweep over the fleet; '0' starts a new pass. */
  private fleetCursor = '0';
  private sweeping = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly options: CommandOptions,
    private readonly held: HeldCommands,
    private readonly ending: CommandEnding,
    private readonly running: () => boolean,
  ) {}

  start(): void {
    this.timer = this.ctx.clock.setInterval(() => void this.sweep(), this.options.sweepIntervalMs);
  }

  stop(): void {
    if (this.timer) this.ctx.clock.clearInterval(this.timer);
  }

  /** One tick: a bounded part of the fleet, when this gateway holds the sweep lease. */
  async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    const c = this.ctx;
    try {
      if (!(await this.holdLease())) return;
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
          if (!this.running()) return;
          await this.sweepDevice(deviceId, mqtt[i] === 1);
        }
        swept += devices.length;
      } while (this.fleetCursor !== '0' && swept < SWEEP_DEVICES_PER_TICK && this.running());
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
  private async holdLease(): Promise<boolean> {
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
    const cursor = this.cursors.get(deviceId) ?? '-';
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
      const open = command ? await this.sweepEntry({ deviceId, entryId, fields, command }, mqtt, now) : false;
      // The cursor moves past entries that are settled, so each sweep reads only the open tail.
      if (open) settled = false;
      if (settled) this.cursors.set(deviceId, `(${entryId}`);
    }
  }

  /** One entry of the sweep; true while the command is still open (someone may yet end it). */
  private async sweepEntry(r: ReadCommand, mqtt: boolean, now: number): Promise<boolean> {
    const c = this.ctx;
    const { deviceId, command } = r;
    const ledgerKey = c.keys.commandLedger(deviceId, command.id);
    const ledger = await this.ending.ledger(r);
    if (!ledger) return false;
    const st = ledger.status;
    if (ledger.stored) {
      await this.ending.republish(r, ledger.stored, false);
      return false;
    }
    if (st !== 'queued' && st !== 'delivered' && st !== 'running') return false;
    if (this.held.has(deviceId, command.id)) return true;
    if (st === 'queued' && command.deadline <= now) {
      const message = mqtt
        ? 'the device did not come back before the deadline'
        : 'the agent did not read the command before its deadline; not executed';
      const expired = await expireQueuedCommand(c.client, {
        ledger: ledgerKey,
        stream: c.keys.commands(deviceId),
        now,
        deadline: command.deadline,
        expireAt: this.ending.expireAt(command),
        result: this.ending.result(r, 'expired', message, false),
        // An MQTT device's group is the gateways': reading is not receipt.
        entryId: mqtt ? undefined : r.entryId,
      });
      if (expired.ended) {
        await this.ending.republish(r, expired.result, false);
        return false;
      }
      // The device recorded it meanwhile (delivered or running: it decides), or it ended: next sweep.
      // An agent that read it (its group did; the ledger is `queued` while a read-only command runs)
      // received it: the grace rule below applies, as for `delivered`.
      if (expired.status !== 'received') return true;
    }
    if (!mqtt && command.deadline + this.options.agentResultGraceMs <= now) {
      // delivered, running or read: the agent received it and never reported (no ack: the entry is the agent's).
      await this.ending.finish(
        r,
        'unknown',
        `the agent received it and reported no result within ${this.options.agentResultGraceMs} ms after its deadline; it may or may not have taken effect`,
        true,
        { errorClass: 'AgentGone', deliveredAt: ledger.deliveredAt || undefined, attempts: ledger.attempts },
        false,
      );
      return false;
    }
    if (mqtt && st === 'delivered' && command.deadline + ORPHAN_GRACE_MS <= now) {
      await this.ending.finish(
        r,
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
