/**
 * Commands this gateway has read and not yet ended: held for their devices
 * (broker mode: until the device is connected; bridge mode: handed to the
 * upstream broker) until a reply or the deadline. The held set, not an MQTT
 * session queue, is what lets the gateway drop a command at its deadline.
 */
import type { Clock } from '#shared/clock.js';
import type { Command } from '#shared/commands/codec.js';

export interface Held {
  readonly deviceId: string;
  readonly entryId: string;
  readonly command: Command;
  /** The entry's fields as read, for a dead letter. */
  readonly fields: string[];
  /** The device acknowledged it (PUBACK, or a reply): `delivered`. */
  acked: boolean;
  /** Fires at the deadline. */
  timer: NodeJS.Timeout;
  /** Bridge mode: when the upstream broker took the command (PUBACK to this gateway), if it did. */
  sentAt?: number;
  /** Bridge mode: a publish in flight, or a retry of a failed one waiting. */
  sending?: boolean;
  retry?: NodeJS.Timeout;
}

export class HeldCommands {
  private readonly held = new Map<string, Held>();

  constructor(private readonly clock: Clock) {}

  private static key(deviceId: string, commandId: string): string {
    return `${deviceId}\u0000${commandId}`;
  }

  get(deviceId: string, commandId: string): Held | undefined {
    return this.held.get(HeldCommands.key(deviceId, commandId));
  }

  has(deviceId: string, commandId: string): boolean {
    return this.held.has(HeldCommands.key(deviceId, commandId));
  }

  /** Holds a command until `onDeadline` at its deadline (or until released). */
  hold(
    entry: { deviceId: string; entryId: string; command: Command; fields: string[]; acked: boolean },
    onDeadline: (h: Held) => void,
  ): Held {
    const held: Held = {
      ...entry,
      timer: this.clock.setTimeout(() => onDeadline(held), entry.command.deadline - this.clock.now()),
    };
    this.held.set(HeldCommands.key(entry.deviceId, entry.command.id), held);
    return held;
  }

  /** Whether `h` is still the one held for its command (not ended, nor replaced). */
  holds(h: Held): boolean {
    return this.get(h.deviceId, h.command.id) === h;
  }

  /** Stops holding a command (it is ending): its timers are cleared. */
  release(deviceId: string, commandId: string): void {
    const h = this.get(deviceId, commandId);
    if (!h) return;
    this.clear(h);
    this.held.delete(HeldCommands.key(deviceId, commandId));
  }

  ofDevice(deviceId: string): Held[] {
    return [...this.held.values()].filter((h) => h.deviceId === deviceId);
  }

  /** Stop: timers cleared; the entries stay in this consumer's pending list, read again on restart. */
  releaseAll(): void {
    for (const h of this.held.values()) this.clear(h);
    this.held.clear();
  }

  private clear(h: Held): void {
    this.clock.clearTimeout(h.timer);
    if (h.retry) this.clock.clearTimeout(h.retry);
  }
}
