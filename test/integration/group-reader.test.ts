/**
 * The one consumer-group reader (shared/streams/group-reader.ts) on a real
 * server: it makes the group when missing (from the start of the stream), reads
 * a consumer's own pending entries before new ones, in order and a page at a
 * time, reads them again after rewind(), and takes over a dead consumer's
 * entries with XAUTOCLAIM, naming those trimmed meanwhile.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroupReader } from '#shared/streams/group-reader.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';

let server: RedisServer;
let client: Redis;

beforeAll(async () => {
  server = await startRedis();
  client = server.client();
});
afterAll(async () => {
  client.disconnect();
  await server.destroy();
});

const ids = (entries: ReadonlyArray<[string, unknown]>) => entries.map(([id]) => id);

async function fill(stream: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await client.xadd(stream, '*', 'n', String(i))) as string);
  return out;
}

describe('GroupReader', () => {
  it('makes the group from the start of the stream: entries written before it are read, as new', async () => {
    const stream = `${randomPrefix()}:s`;
    const written = await fill(stream, 3);
    const reader = new GroupReader(client, stream, { group: 'g', consumer: 'c', count: 10 });
    const first = await reader.read();
    expect(first.source).toBe('new');
    expect(ids(first.entries)).toEqual(written);
    expect(first.entries[0]?.[1]).toEqual(['n', '0']);
    // A second reader of the same group finds the group there (BUSYGROUP is not an error).
    await new GroupReader(client, stream, { group: 'g', consumer: 'd', count: 10 }).ensureGroup();
  });

  it('reads its own pending entries first, a page at a time and in order, then new ones', async () => {
    const stream = `${randomPrefix()}:s`;
    const written = await fill(stream, 5);
    const options = { group: 'g', consumer: 'c', count: 2 };
    // A previous life read all five (three pages) and acknowledged none.
    const before = new GroupReader(client, stream, options);
    for (let i = 0; i < 3; i++) await before.read();
    const later = await fill(stream, 1);

    const reader = new GroupReader(client, stream, options);
    const pages = [await reader.read(), await reader.read(), await reader.read()];
    expect(pages.map((p) => p.source)).toEqual(['pending', 'pending', 'pending']);
    expect(pages.flatMap((p) => ids(p.entries))).toEqual(written);
    const fresh = await reader.read();
    expect(fresh.source).toBe('new');
    expect(ids(fresh.entries)).toEqual(later);

    // After an error the caller rewinds: what is still pending is read again first.
    await reader.ack(...written.slice(0, 4));
    reader.rewind();
    const again = await reader.read();
    expect(again.source).toBe('pending');
    expect(ids(again.entries)).toEqual([written[4], later[0]]);
  });

  it('blocks for new entries up to blockMs on the read connection it is given', async () => {
    const stream = `${randomPrefix()}:s`;
    const own = server.client();
    try {
      const reader = new GroupReader(client, stream, {
        group: 'g',
        consumer: 'c',
        count: 10,
        blockMs: 5000,
        readClient: own,
      });
      await reader.ensureGroup();
      await reader.read(); // own pending: none; new: none yet, so this read blocks until the XADD below
      const reading = reader.read();
      const [id] = await fill(stream, 1);
      const read = await reading;
      expect(read.source).toBe('new');
      expect(ids(read.entries)).toEqual([id]);
    } finally {
      own.disconnect();
    }
  }, 20_000);

  it("claims a dead consumer's entries after they idled, page by page, and names those trimmed meanwhile", async () => {
    const stream = `${randomPrefix()}:s`;
    const written = await fill(stream, 3);
    const dead = new GroupReader(client, stream, { group: 'g', consumer: 'dead', count: 10 });
    await dead.read();
    await client.xdel(stream, written[1]!);
    const heir = new GroupReader(client, stream, { group: 'g', consumer: 'heir', count: 2 });
    const tooSoon = await heir.claim(60_000);
    expect(tooSoon.entries).toEqual([]);
    // Redis drops a trimmed entry from the pending list whenever the scan meets it, idle or not.
    const deleted: string[] = [...tooSoon.deleted];
    await new Promise((r) => setTimeout(r, 30));
    const claimed: string[] = [];
    for (let page = 0; page < 5; page++) {
      const c = await heir.claim(10);
      expect(c.source).toBe('claimed');
      claimed.push(...ids(c.entries));
      deleted.push(...c.deleted);
      if (!c.more) break;
    }
    expect(claimed).toEqual([written[0], written[2]]);
    expect(deleted).toEqual([written[1]]);
    // They are the heir's now: its own pending entries.
    const own = await heir.read();
    expect(own.source).toBe('pending');
    expect(ids(own.entries)).toEqual([written[0], written[2]]);
  });
});
