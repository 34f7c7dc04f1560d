/**
 * Sequence numbers for devices whose payloads carry none. They must never
 * repeat (they are the idempotency key), across gateway restarts and across
 * several gateways: each gateway reserves a block per device with one INCRBY
 * on the device's counter (atomic in Redis), and hands out numbers of its
 * block in order. A crash leaves a gap of at most one block; numbers are never
 * handed out twice.
 *
 * Requests are served strictly in arrival order per device (callbacks, not
 * promises), so a device's messages keep their order while a block is fetched.
 *
 * Memory: a device's block is forgotten when its last connection ends
 * (broker mode, `forget`), and at most `maxDevices` blocks are kept at all
 * (bridge mode has no disconnects): beyond that the oldest idle one goes. A
 * forgotten block only costs the numbers left in it (a gap, never a repeat).
 * After close(), no reservation is retried and no callback is called.
 */
import type { Clock } from '#shared/clock.js';
import type { Keys } from '#shared/keys.js';
import type { Logger } from '#shared/log.js';
import { type RedisClient, reconnectDelay } from '#shared/redis/connect.js';

interface DeviceBlock {
  next: number;
  last: number;
  waiters: Array<(seq: number) => void>;
  fetching: boolean;
  /** Forget once the reservation in progress is served (the device left meanwhile). */
  forget: boolean;
}

/** Blocks kept at most; each is a few dozen bytes, so this caps the map near a megabyte. */
export const DEFAULT_MAX_SEQUENCER_DEVICES = 100_000;

export class GatewaySequencer {
  private readonly devices = new Map<string, DeviceBlock>();
  private closed = false;
  private readonly retries = new Set<NodeJS.Timeout>();

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly block: number,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly maxDevices = DEFAULT_MAX_SEQUENCER_DEVICES,
  ) {}

  /** Calls `cb` with the device's next number: at once when the block has one, else after a reservation. */
  assign(deviceId: string, cb: (seq: number) => void): void {
    let d = this.devices.get(deviceId);
    if (!d) {
      if (this.devices.size >= this.maxDevices) this.evictIdle();
      d = { next: 1, last: 0, waiters: [], fetching: false, forget: false };
      this.devices.set(deviceId, d);
    }
    d.forget = false;
    if (d.waiters.length === 0 && d.next <= d.last) {
      cb(d.next++);
      return;
    }
    d.waiters.push(cb);
    if (!d.fetching) this.reserve(deviceId, d, 0);
  }

  /** Drops the oldest block that waits for nothing (Map order is insertion order). */
  private evictIdle(): void {
    for (const [id, d] of this.devices) {
      if (d.waiters.length === 0 && !d.fetching) {
        this.devices.delete(id);
        return;
      }
    }
  }

  private reserve(deviceId: string, d: DeviceBlock, attempt: number): void {
    if (this.closed) return;
    d.fetching = true;
    // Reserve enough for everyone waiting, at least one block.
    const size = Math.max(this.block, d.waiters.length);
    this.client.incrby(this.keys.gatewaySequence(deviceId), size).then(
      (high) => {
        if (this.closed) return;
        d.fetching = false;
        d.next = high - size + 1;
        d.last = high;
        const waiters = d.waiters;
        d.waiters = [];
        for (const w of waiters) w(d.next++);
        if (d.waiters.length > 0 && !d.fetching) this.reserve(deviceId, d, 0);
        else if (d.forget && this.devices.get(deviceId) === d) this.devices.delete(deviceId);
      },
      (err: Error) => {
        if (this.closed) return;
        this.logger.warn({ deviceId, error: err.message }, 'sequence reservation failed; retrying');
        const timer = this.clock.setTimeout(
          () => {
            this.retries.delete(timer);
            this.reserve(deviceId, d, attempt + 1);
          },
          reconnectDelay(attempt, 2000),
        );
        this.retries.add(timer);
      },
    );
  }

  /** Devices with a block in memory (connected devices in broker mode; at most maxDevices). */
  get size(): number {
    return this.devices.size;
  }

  /** Forgets a device's block (its last connection ended), or does once a reservation in progress is served. */
  forget(deviceId: string): void {
    const d = this.devices.get(deviceId);
    if (!d) return;
    if (d.waiters.length === 0 && !d.fetching) this.devices.delete(deviceId);
    else d.forget = true;
  }

  /** Stops: no retry, no callback after this (the gateway is shutting down). */
  close(): void {
    this.closed = true;
    for (const t of this.retries) this.clock.clearTimeout(t);
    this.retries.clear();
  }
}
