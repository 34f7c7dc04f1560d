/**
 * The gateway's own streams: rejected input and presence events. Each writer
 * retries an append until Redis takes it (with capped, jittered backoff) and
 * only then calls back, so a QoS 1 publish that was rejected is acknowledged
 * only once its rejection is recorded: nothing is dropped silently.
 *
 * Memory: a record with a callback holds a device's PUBACK, so its
 * connection reads nothing more meanwhile (bounded by connections). Events
 * nobody waits for (connects and disconnects) have no such brake: at most
 * `maxPendingEvents` of them are outstanding (in flight or waiting to retry);
 * beyond that, during an outage with a reconnect storm, new ones are dropped,
 * counted (`gateway_presence_dropped_total`), logged once per episode and
 * reported on /healthz (`presence-dropped`). Every rejected record is a
 * refused publish and is reported too (`publishes-refused`), whoever
 * rejects it (the ingestor, command intake).
 * After close(), nothing is retried or written.
 *
 * Rejected entry fields: r reason, topic, d device (as authenticated or as
 * named by the topic; empty when unknown), t gateway time (ms), g gateway id,
 * n payload length, p the first bytes of the payload (UTF-8, lossy), m the
 * vendor mapping that took or tried the message (only when one did, see
 * gateway/mappings).
 *
 * Presence entry fields: d device, e event (connected | disconnected | lost |
 * will | status | birth | death: Sparkplug B, gateway/sparkplug), t gateway time (ms), g gateway id, p payload text (will and
 * status messages only).
 */
import type { Clock } from '#shared/clock.js';
import type { HealthBook, LossCondition } from '#shared/health.js';
import type { Keys } from '#shared/keys.js';
import { EpisodeLog, type Logger } from '#shared/log.js';
import { Counter, type Registry } from '#shared/metrics.js';
import { type RedisClient, reconnectDelay } from '#shared/redis/connect.js';

/** Bytes of a rejected payload kept for diagnosis: enough to see what it was, bounded. */
export const REJECTED_PREVIEW_BYTES = 256;

export type RejectReason =
  | 'oversized'
  | 'malformed'
  | 'unmapped'
  | 'unauthorized'
  | 'invalid'
  | 'unknown-command'
  // Sparkplug B: a metric by an alias no birth certificate defined (gateway/sparkplug).
  | 'unknown-alias';

export interface Rejection {
  reason: RejectReason;
  detail: string;
  topic: string;
  deviceId: string | undefined;
  payload: Buffer;
  /** The vendor mapping(s) that took or tried the message (gateway/mappings). */
  mapping?: string;
}

export type PresenceEvent = 'connected' | 'disconnected' | 'lost' | 'will' | 'status' | 'birth' | 'death';

export interface RecordLimits {
  rejectedMaxLen: number;
  presenceMaxLen: number;
  /** Presence events with no waiting device (connects, disconnects) outstanding at once; more are dropped. */
  maxPendingEvents: number;
}

export class RecordWriter {
  /** Events without a callback in flight or waiting to retry. */
  private pendingEvents = 0;
  private closed = false;
  private readonly retries = new Set<NodeJS.Timeout>();
  private readonly dropped: Counter;
  private readonly dropping: EpisodeLog;
  private readonly droppedHealth: LossCondition | undefined;
  /** Publishes refused: rejected here, or refused by the broker's ACL (which records nothing). */
  readonly refusals: LossCondition;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keys,
    private readonly gatewayId: string,
    private readonly limits: RecordLimits,
    private readonly clock: Clock,
    private readonly logger: Logger,
    registry: Registry,
    health?: HealthBook,
  ) {
    this.dropped = new Counter({
      name: 'gateway_presence_dropped_total',
      help: 'Connect/disconnect presence events dropped: gateway.maxPendingEvents were already waiting for Redis',
      registers: [registry],
    });
    this.dropping = new EpisodeLog(logger, 'presence events dropped: Redis is not taking them fast enough');
    this.droppedHealth = health?.loss(
      'presence-dropped',
      'presence events dropped (gateway.maxPendingEvents were already waiting for Redis)',
    );
    this.refusals = health?.loss(
      'publishes-refused',
      'publishes refused: written to the rejected stream with the reason, or a will refused by the topic ACL (see gateway_rejected_total)',
    ) ?? { hit: () => {} };
  }

  /** Presence events outstanding (in flight or waiting to retry) that no device waits for. */
  get pending(): number {
    return this.pendingEvents;
  }

  /** Stops retrying and writing; callbacks of records still outstanding are never called. */
  close(): void {
    this.closed = true;
    for (const t of this.retries) this.clock.clearTimeout(t);
    this.retries.clear();
  }

  reject(r: Rejection, done: () => void): void {
    this.refusals.hit(1, `${r.reason}: ${r.topic}`);
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
    if (r.mapping !== undefined) fields.push('m', r.mapping);
    this.append(this.keys.rejected(), this.limits.rejectedMaxLen, fields, done, 0);
  }

  /**
   * A presence event. With `done` (a will or status message whose PUBACK
   * waits), retried until written; without (connects, disconnects), bounded
   * by `maxPendingEvents` and dropped, counted, beyond it.
   */
  presence(deviceId: string, event: PresenceEvent, payload: Buffer | undefined, done?: () => void): void {
    if (this.closed) return;
    let callback = done;
    if (!callback) {
      if (this.pendingEvents >= this.limits.maxPendingEvents) {
        this.dropped.inc();
        this.droppedHealth?.hit();
        this.dropping.hit({ pending: this.pendingEvents, deviceId, event });
        return;
      }
      this.pendingEvents++;
      callback = () => {
        this.pendingEvents--;
        if (this.pendingEvents === 0) this.dropping.end();
      };
    }
    const now = this.clock.now();
    const fields = ['d', deviceId, 'e', event, 't', String(now), 'g', this.gatewayId];
    if (payload) fields.push('p', payload.subarray(0, REJECTED_PREVIEW_BYTES).toString('utf8'));
    this.append(this.keys.presence(), this.limits.presenceMaxLen, fields, callback, 0, [deviceId, now]);
  }

  /** This gateway holds the device's session now (broker mode): best effort, the next connect writes it again. */
  holdSession(deviceId: string): void {
    if (this.closed) return;
    this.client.hset(this.keys.sessions(), deviceId, this.gatewayId).catch((err: Error) => {
      this.logger.warn({ deviceId, error: err.message }, 'session holder not recorded');
    });
  }

  /** The device's last session here ended: unrecorded, unless another gateway holds it by now. */
  releaseSession(deviceId: string): Promise<boolean> {
    return releaseSession(this.client, this.keys, deviceId, this.gatewayId);
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
    run.then(
      () => {
        if (!this.closed) done();
      },
      (err: Error) => {
        if (this.closed) return;
        this.logger.warn({ stream, error: err.message, attempt }, 'record append failed; retrying');
        const timer = this.clock.setTimeout(
          () => {
            this.retries.delete(timer);
            this.append(stream, maxLen, fields, done, attempt + 1, lastSeen);
          },
          reconnectDelay(attempt, 2000),
        );
        this.retries.add(timer);
      },
    );
  }
}

/** HDEL of a session holder only if it is still `gatewayId` (a device may have moved to another gateway). */
export async function releaseSession(
  client: RedisClient,
  keys: Keys,
  deviceId: string,
  gatewayId: string,
): Promise<boolean> {
  const removed = await client.eval(RELEASE_IF_HOLDER, 1, keys.sessions(), deviceId, gatewayId);
  return removed === 1;
}

const RELEASE_IF_HOLDER = `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0`;
