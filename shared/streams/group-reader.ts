/**
 * One consumer-group reader of one stream, for every consumer in the project
 * (the agent's command worker, the gateway's command delivery, the state
 * projection): create the group if missing, read this consumer's own pending
 * entries first (a previous life's, or a batch an error cut short), then new
 * ones, and take over a dead consumer's entries with XAUTOCLAIM. Every read
 * answers with one typed reply (GroupRead), whatever command produced it.
 *
 * Why own pending entries first: entries delivered to this consumer and not
 * acknowledged are only ever delivered again to it by reading from an id
 * (XREADGROUP ... 0), never with '>' (https://redis.io/docs/latest/commands/xreadgroup/);
 * reading only new ones would run newer entries before older ones and leave
 * those to XAUTOCLAIM, breaking per-stream order.
 *
 * The reader holds no connection of its own: a blocking read holds the
 * connection it runs on, so a caller that blocks passes a connection of its
 * own for reads (`readClient`); acks, claims and group creation go over the
 * shared `client`, so they still work while a read is blocked or after the
 * read connection is closed at stop.
 */
import type { RedisClient } from '../redis/connect.js';

/** A stream entry as Redis returns it; fields are null when the entry was deleted (trimmed) while pending. */
export type StreamEntry = [id: string, fields: string[] | null];

/** Where the entries of a read came from. */
export type ReadSource = 'pending' | 'new' | 'claimed';

export interface GroupRead {
  readonly stream: string;
  readonly source: ReadSource;
  readonly entries: StreamEntry[];
  /** XAUTOCLAIM only: ids Redis removed from the pending list because the entries were trimmed (Redis 7+). */
  readonly deleted: readonly string[];
  /** XAUTOCLAIM only: the scan of the pending list has not wrapped round yet (claim again for the next page). */
  readonly more: boolean;
}

export interface GroupReaderOptions {
  group: string;
  consumer: string;
  /** Entries per read (XREADGROUP and XAUTOCLAIM COUNT). */
  count: number;
  /** Block this long for new entries; absent, a read of new entries returns at once. */
  blockMs?: number;
  /** Where a group created here starts; '0' (the default) delivers entries written before the group existed. */
  startId?: string;
  /** The connection XREADGROUP runs on (one that may block); `client` when absent. */
  readClient?: RedisClient;
}

type XReadGroupReply = Array<[stream: string, entries: StreamEntry[]]> | null;
type XAutoClaimReply = [next: string, entries: StreamEntry[], deleted?: string[]];

export class GroupReader {
  /** '>' once this consumer's pending entries are read; else the id after which they are read on. */
  private cursor = '0';
  private claimCursor = '0-0';
  private grouped = false;

  constructor(
    private readonly client: RedisClient,
    readonly stream: string,
    readonly options: GroupReaderOptions,
  ) {}

  /** XGROUP CREATE ... MKSTREAM unless this reader made it already; an existing group (BUSYGROUP) is fine. */
  async ensureGroup(): Promise<void> {
    if (this.grouped) return;
    try {
      await this.client.xgroup(
        'CREATE',
        this.stream,
        this.options.group,
        this.options.startId ?? '0',
        'MKSTREAM',
      );
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.grouped = true;
  }

  /**
   * This consumer's own pending entries, a page at a time, until none are left; then new
   * entries ('>', blocking up to `blockMs`). Creates the group on first use.
   */
  async read(): Promise<GroupRead> {
    await this.ensureGroup();
    if (this.cursor !== '>') {
      const entries = await this.readFrom(this.cursor, undefined);
      // A page shorter than asked for is the end of the pending list: new entries from the next read.
      if (entries.length < this.options.count) this.cursor = '>';
      else this.cursor = entries[entries.length - 1]![0];
      if (entries.length > 0) return this.reply('pending', entries);
    }
    return this.reply('new', await this.readFrom('>', this.options.blockMs));
  }

  /**
   * One page of XAUTOCLAIM: entries other consumers left pending for at least `minIdleMs`
   * become this consumer's. The scan position is kept, so successive calls walk the whole
   * pending list (`more` false once it wrapped round).
   */
  async claim(minIdleMs: number): Promise<GroupRead> {
    await this.ensureGroup();
    const [next, entries, deleted] = (await this.client.xautoclaim(
      this.stream,
      this.options.group,
      this.options.consumer,
      minIdleMs,
      this.claimCursor,
      'COUNT',
      this.options.count,
    )) as XAutoClaimReply;
    this.claimCursor = next;
    return { stream: this.stream, source: 'claimed', entries, deleted: deleted ?? [], more: next !== '0-0' };
  }

  /**
   * Keeps an entry this consumer is still working on (a retry's backoff) from being claimed:
   * XCLAIM by its owner resets the entry's idle time.
   */
  async hold(entryId: string): Promise<void> {
    await this.client.call(
      'XCLAIM',
      this.stream,
      this.options.group,
      this.options.consumer,
      0,
      entryId,
      'JUSTID',
    );
  }

  async ack(...entryIds: string[]): Promise<void> {
    if (entryIds.length > 0) await this.client.xack(this.stream, this.options.group, ...entryIds);
  }

  /** After an error: read own pending entries again from the start (the rest of a batch cut short is there). */
  rewind(): void {
    this.cursor = '0';
  }

  /** The next read() reads new entries (own pending ones were read, or are held elsewhere). */
  get readingNew(): boolean {
    return this.cursor === '>';
  }

  private async readFrom(id: string, blockMs: number | undefined): Promise<StreamEntry[]> {
    const { group, consumer, count } = this.options;
    const args: (string | number)[] = ['GROUP', group, consumer, 'COUNT', count];
    if (blockMs !== undefined) args.push('BLOCK', blockMs);
    args.push('STREAMS', this.stream, id);
    try {
      const reader = this.options.readClient ?? this.client;
      const reply = (await (reader.xreadgroup as (...a: (string | number)[]) => Promise<unknown>)(
        ...args,
      )) as XReadGroupReply;
      return reply?.[0]?.[1] ?? [];
    } catch (err) {
      // The stream (and its group) was deleted meanwhile: make the group again on the next read.
      if (String((err as Error).message).includes('NOGROUP')) this.grouped = false;
      throw err;
    }
  }

  private reply(source: ReadSource, entries: StreamEntry[]): GroupRead {
    return { stream: this.stream, source, entries, deleted: [], more: false };
  }
}
