/**
 * The gateway's own streams: rejected input and presence events. Each writer
 * retries an append until Redis takes it (with capped, jittered backoff) and
 * only then calls back, so a QoS 1 publish that was rejected is acknowledged
 * only once its rejection is recorded: nothing is dropped silently.
 *
 * Rejected entry fields: r reason, topic, d device (as authenticated or as
 * named by the topic; empty when unknown), t gateway time (ms), g gateway id,
 * n payload length, p the first bytes of the payload (UTF-8, lossy).
 *
 * Presence entry fields: d device, e event (connected | disconnected | lost |
 * will | status), t gateway time (ms), g gateway id, p payload text (will and
 * status messages only).
 */
import type { Clock } from '#shared/clock.js';
import type { Keys } from '#shared/keys.js';
import type { Logger } from '#shared/log.js';
import { type RedisClient, reconnectDelay } from '#shared/redis/connect.js';

/** Bytes of a rejected payload kept for diagnosis: enough to see what it was, bounded. */
export const REJECTED_PREVIEW_BYTES = 256;

export type RejectReason =
  | 'oversized'
  | 'malformed'
  | 'unmapped'
  | 'unauthorized'
  | 'invalid'
  | 'unknown-command';

export interface Rejection {
  reason: RejectReason;
  detail: string;
  topic: string;
  deviceId: string | undefined;
  payload: Buffer;
}

export type PresenceEvent = 'connected' | 'disconnected' | 'lost' | 'will' | 'status';

export class RecordWriter {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly gatewayId: string,
    private readonly limits: { rejectedMaxLen: number; presenceMaxLen: number },
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  reject(r: Rejection, done: () => void): void {
    const fields = [
      'r',
      `${r.reason}: ${r.detail}`,
      'topic',
      r.topic,
      'd',
      r.deviceId ?? '',
      't',
      String(this.clock.now()),
      'g',
      this.gatewayId,
      'n',
      String(r.payload.length),
      'p',
      r.payload.subarray(0, REJECTED_PREVIEW_BYTES).toString('utf8'),
    ];
    this.append(this.keys.rejected(), this.limits.rejectedMaxLen, fields, done, 0);
  }

  presence(deviceId: string, event: PresenceEvent, payload: Buffer | undefined, done: () => void): void {
    const now = this.clock.now();
    const fields = ['d', deviceId, 'e', event, 't', String(now), 'g', this.gatewayId];
    if (payload) fields.push('p', payload.subarray(0, REJECTED_PREVIEW_BYTES).toString('utf8'));
    this.append(this.keys.presence(), this.limits.presenceMaxLen, fields, done, 0, [deviceId, now]);
  }

  /** Last-seen times of many devices in one HSET. */
  touch(seen: ReadonlyMap<string, number>): Promise<unknown> {
    if (seen.size === 0) return Promise.resolve();
    const args: (string | number)[] = [];
    for (const [d, t] of seen) args.push(d, t);
    return this.client.hset(this.keys.lastSeen(), ...args);
  }

  private append(
    stream: string,
    maxLen: number,
    fields: string[],
    done: () => void,
    attempt: number,
    lastSeen?: [string, number],
  ): void {
    // Two plain commands, not a pipeline: the stream and the hash live in different cluster slots.
    const run = Promise.all([
      maxLen > 0
        ? this.client.xadd(stream, 'MAXLEN', '~', maxLen, '*', ...fields)
        : this.client.xadd(stream, '*', ...fields),
      lastSeen ? this.client.hset(this.keys.lastSeen(), lastSeen[0], lastSeen[1]) : null,
    ]);
    run.then(done, (err: Error) => {
      this.logger.warn({ stream, error: err.message, attempt }, 'record append failed; retrying');
      this.clock.setTimeout(
        () => this.append(stream, maxLen, fields, done, attempt + 1, lastSeen),
        reconnectDelay(attempt, 2000),
      );
    });
  }
}
