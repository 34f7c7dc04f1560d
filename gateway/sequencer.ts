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
}

export class GatewaySequencer {
  private readonly devices = new Map<string, DeviceBlock>();

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly block: number,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Calls `cb` with the device's next number: at once when the block has one, else after a reservation. */
  assign(deviceId: string, cb: (seq: number) => void): void {
    let d = this.devices.get(deviceId);
    if (!d) {
      d = { next: 1, last: 0, waiters: [], fetching: false };
      this.devices.set(deviceId, d);
    }
    if (d.waiters.length === 0 && d.next <= d.last) {
      cb(d.next++);
      return;
    }
    d.waiters.push(cb);
    if (!d.fetching) this.reserve(deviceId, d, 0);
  }

  private reserve(deviceId: string, d: DeviceBlock, attempt: number): void {
    d.fetching = true;
    // Reserve enough for everyone waiting, at least one block.
    const size = Math.max(this.block, d.waiters.length);
    this.client.incrby(this.keys.gatewaySequence(deviceId), size).then(
      (high) => {
        d.fetching = false;
        d.next = high - size + 1;
        d.last = high;
        const waiters = d.waiters;
        d.waiters = [];
        for (const w of waiters) w(d.next++);
        if (d.waiters.length > 0 && !d.fetching) this.reserve(deviceId, d, 0);
      },
      (err: Error) => {
        this.logger.warn({ deviceId, error: err.message }, 'sequence reservation failed; retrying');
        this.clock.setTimeout(() => this.reserve(deviceId, d, attempt + 1), reconnectDelay(attempt, 2000));
      },
    );
  }

  /** Devices with a block in memory (bounded by the devices this gateway serves). */
  get size(): number {
    return this.devices.size;
  }

  /** Forgets a device's block (on disconnect): memory stays bounded by connected devices. */
  forget(deviceId: string): void {
    const d = this.devices.get(deviceId);
    if (d && d.waiters.length === 0 && !d.fetching) this.devices.delete(deviceId);
  }
}
