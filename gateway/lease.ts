/**
 * Several gateways: each one holds a lease in Redis (a key with an expiry,
 * renewed every third of `gateway.leaseTtl`) and is listed, with how to reach
 * its MQTT sessions, in the gateways hash. A gateway that stops or dies stops
 * renewing; once its lease has expired, one surviving gateway (the one that
 * wins the adoption key, SET NX) takes over what it left behind:
 *
 * - bridge mode: its persistent sessions at the upstream broker, which keep
 *   receiving its share of the shared subscription and hold its unacknowledged
 *   messages. The adopter resumes, drains and ends them (GatewayBridge
 *   .adoptSessions), so nothing the broker accepted waits for a gateway that
 *   may never come back, and new messages go to the gateways that are up.
 *
 * A gateway that comes back under the same `gateway.id` renews its lease and
 * opens new sessions; an adoption still running is cut off by the broker's
 * session takeover, and its unacknowledged messages go back to their owner.
 */
import type { GatewayBridge } from './bridge.js';
import { releaseSession } from './records.js';
import type { GatewayContext, GatewayService } from './services.js';

/** What another gateway needs to adopt this one's sessions. */
interface GatewayRecord {
  mode: string;
  bridgeConnections: number;
  startedAt: number;
}

export class GatewayLease implements GatewayService {
  readonly name = 'lease';
  private timer: NodeJS.Timeout | undefined;
  private adopting = false;
  private stopped = false;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly bridge: GatewayBridge | undefined,
    private readonly options: { ttlMs: number; adoptIdleMs: number },
  ) {}

  async start(): Promise<void> {
    const c = this.ctx;
    const record: GatewayRecord = {
      mode: c.config['gateway.mode'],
      bridgeConnections: c.config['bridge.connections'],
      startedAt: c.clock.now(),
    };
    await c.client.hset(c.keys.gateways(), c.gatewayId, JSON.stringify(record));
    await this.renew();
    this.timer = c.clock.setInterval(
      () => void this.tick(),
      Math.max(100, Math.floor(this.options.ttlMs / 3)),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) this.ctx.clock.clearInterval(this.timer);
    // The lease is left to expire: a stop for good and a crash look the same, and a
    // restart under the same id within the lease keeps its sessions without adoption.
  }

  private async renew(): Promise<void> {
    const c = this.ctx;
    await c.client.set(c.keys.gatewayLease(c.gatewayId), String(c.clock.now()), 'PX', this.options.ttlMs);
  }

  private async tick(): Promise<void> {
    try {
      await this.renew();
      if (!this.adopting && !this.stopped) await this.adoptExpired();
    } catch (err) {
      this.ctx.logger.warn({ error: (err as Error).message }, 'gateway lease renewal failed; retrying');
    }
  }

  /** Takes over the sessions of every listed gateway whose lease has expired, one at a time. */
  private async adoptExpired(): Promise<void> {
    const c = this.ctx;
    const listed = await c.client.hgetall(c.keys.gateways());
    for (const [id, raw] of Object.entries(listed)) {
      if (id === c.gatewayId || this.stopped) continue;
      const record = JSON.parse(raw) as GatewayRecord;
      // Bridge sessions are taken over by a bridge-mode gateway (same upstream broker and group);
      // a broker-mode gateway's device sessions are ended by any gateway.
      if (record.mode === 'bridge' && !this.bridge) continue;
      if ((await c.client.exists(c.keys.gatewayLease(id))) === 1) continue;
      // Long enough to drain; if this gateway dies while adopting, another one takes over after it.
      const claim = await c.client.set(
        c.keys.gatewayAdoption(id),
        c.gatewayId,
        'PX',
        this.options.ttlMs * 3,
        'NX',
      );
      if (claim !== 'OK') continue;
      this.adopting = true;
      try {
        let taken = 0;
        if (record.mode === 'bridge' && this.bridge)
          taken = await this.bridge.adoptSessions(id, record.bridgeConnections, this.options.adoptIdleMs);
        if (record.mode === 'broker') taken = await this.endSessionsOf(id);
        // Listed again only when it comes back (its start writes the record anew).
        if ((await c.client.exists(c.keys.gatewayLease(id))) === 0)
          await c.client.hdel(c.keys.gateways(), id);
        c.logger.info(
          { gone: id, mode: record.mode, messages: taken },
          'adopted the sessions of a gateway that is gone',
        );
      } catch (err) {
        c.logger.warn(
          { gone: id, error: (err as Error).message },
          'adoption failed; retried after the claim expires',
        );
      } finally {
        this.adopting = false;
      }
    }
  }

  /**
   * Broker mode: a gone gateway cannot write "disconnected" for its devices.
   * Each device it still holds (not reconnected elsewhere since) gets a `lost`
   * presence event saying why. Resolves with how many.
   */
  private async endSessionsOf(goneId: string): Promise<number> {
    const c = this.ctx;
    let ended = 0;
    let cursor = '0';
    do {
      const [next, flat] = await c.client.hscan(c.keys.sessions(), cursor, 'COUNT', 500);
      cursor = next;
      for (let i = 0; i < flat.length; i += 2) {
        const deviceId = flat[i]!;
        if (flat[i + 1] !== goneId) continue;
        if (!(await releaseSession(c.client, c.keys, deviceId, goneId))) continue;
        c.records.presence(deviceId, 'lost', Buffer.from(`gateway ${goneId} is gone (its lease expired)`));
        ended++;
      }
    } while (cursor !== '0');
    return ended;
  }
}
