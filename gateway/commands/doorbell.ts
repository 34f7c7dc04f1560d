/**
 * The doorbell: a sender rings `iot:commands:doorbell` after queueing a
 * command (shared/commands/send.ts, ringDoorbell), and every gateway blocks on
 * it (XREAD BLOCK, on a connection of its own: a blocked read holds its
 * connection) to read at once the command streams of the devices named there.
 * It is only a hint: the fallback poll finds whatever a lost or trimmed
 * doorbell entry did not announce, so a command is delayed, never lost.
 */
import { duplicateClient } from '#shared/commands/send.js';
import type { RedisClient } from '#shared/redis/connect.js';
import type { GatewayContext } from '../services.js';
import { DOORBELL_BLOCK_MS } from './options.js';

type XReadReply = Array<[string, Array<[string, string[]]>]> | null;

export class Doorbell {
  private bell: RedisClient | undefined;
  private loop: Promise<void> | undefined;
  private running = false;
  /** True while its connection is up: rings are being heard (poll.ts polls slowly then). */
  listening = false;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly rung: (devices: string[]) => void,
  ) {}

  async start(): Promise<void> {
    const c = this.ctx;
    const bell = duplicateClient(c.client);
    bell.on('error', () => {
      // Reconnects by itself; the read loop retries, and the fallback poll covers the gap.
    });
    // Connected, a blocked read hears every ring (a reconnect reads on from the last one seen);
    // disconnected, rings trimmed meanwhile would be missed: the poll runs at its fast interval.
    bell.on('ready', () => {
      this.listening = this.running;
    });
    bell.on('close', () => {
      this.listening = false;
    });
    this.bell = bell;
    this.running = true;
    // From the doorbell's current end: what was queued before is found by the first poll.
    const tail = await c.client.xrevrange(c.keys.commandDoorbell(), '+', '-', 'COUNT', 1);
    this.loop = this.listen(bell, tail[0]?.[0] ?? '0-0');
  }

  async stop(): Promise<void> {
    this.running = false;
    this.listening = false;
    this.bell?.disconnect();
    await this.loop;
  }

  /**
   * Each read starts after the last entry seen, so entries added while the connection was down
   * are still seen (unless trimmed meanwhile: then the fallback poll finds the commands).
   */
  private async listen(bell: RedisClient, from: string): Promise<void> {
    const c = this.ctx;
    const key = c.keys.commandDoorbell();
    let last = from;
    while (this.running) {
      let reply: XReadReply;
      try {
        reply = (await bell.xread(
          'COUNT',
          1000,
          'BLOCK',
          DOORBELL_BLOCK_MS,
          'STREAMS',
          key,
          last,
        )) as XReadReply;
      } catch {
        if (!this.running) return;
        await new Promise<void>((r) => c.clock.setTimeout(r, 500));
        continue;
      }
      const devices = new Set<string>();
      for (const [, entries] of reply ?? []) {
        for (const [id, fields] of entries) {
          last = id;
          // Fields are [d, <deviceId>]; anything else is not ours and is skipped.
          if (fields[0] === 'd' && fields[1] !== undefined) devices.add(fields[1]);
        }
      }
      if (devices.size > 0) this.rung([...devices]);
    }
  }
}
