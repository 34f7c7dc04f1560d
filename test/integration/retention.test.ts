/**
 * Retention (docs/guarantees.md §4) on a real Redis: the soft policies
 * (age, length) never trim an entry a consumer group has not processed; the
 * hard memory cap does, and its forced-loss counter equals exactly the number
 * of unprocessed entries removed; concurrent trimmers stay correct.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Clock, systemClock } from '#shared/clock.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRegistry, type Registry } from '#shared/metrics.js';
import { createRedis, type RedisClient, waitReady } from '#shared/redis/connect.js';
import { serverTime } from '#shared/streams/inspect.js';
import { createRetentionMetrics } from '../../gateway/retention/metrics.js';
import type { RetentionConfig } from '../../gateway/retention/options.js';
import { retentionOptions } from '../../gateway/retention/options.js';
import { RetentionService } from '../../gateway/retention/service.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { ALL_SERVERS, forEachServer } from '../harness/server-kind.js';
import { baseRedisConfig, forEachTarget } from '../harness/targets.js';

const HOUR = 3_600_000;

/** Policies for the telemetry family only; every other family is left unlimited. */
function options(overrides: Partial<RetentionConfig>) {
  const off: Partial<RetentionConfig> = {};
  for (const f of ['telemetry', 'results', 'presence', 'rejected', 'deadletter', 'commands'] as const) {
    off[`retention.${f}.maxAge`] = 0;
    off[`retention.${f}.maxLen`] = 0;
    off[`retention.${f}.maxBytes`] = 0;
  }
  return retentionOptions({ ...off, ...overrides });
}

async function counterValue(registry: Registry, name: string, labels: Record<string, string>) {
  const metric = await registry.getSingleMetric(name)?.get();
  const hit = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return hit?.value ?? 0;
}

forEachServer('retention [standalone]', (kind) => {
  let server: RedisServer;
  let redis: Redis;
  const clients: RedisClient[] = [];

  beforeAll(async () => {
    server = await startRedis({ local: true, server: kind });
    redis = server.client();
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    redis.disconnect();
    await server.destroy();
  });

  async function setup(overrides: Partial<RetentionConfig>) {
    const keys = new Keys(randomPrefix(), 1);
    const client = createRedis(baseRedisConfig(server.url));
    clients.push(client);
    await waitReady(client, 'test', 10_000);
    const registry = createRegistry({}, false);
    const metrics = createRetentionMetrics(registry);
    const make = (o: Partial<RetentionConfig>, clock: Clock = systemClock) =>
      new RetentionService(client, keys, options(o), { logger: silentLogger(), metrics, clock });
    return { keys, stream: keys.telemetryStream(0), service: make(overrides), registry, make, client };
  }

  /** Sequence part of explicit ids: increasing across calls, as ids must be, even after trims empty a stream. */
  let nextSeq = 1;

  /** Appends `count` entries with explicit ids at `ms` (ascending `ms` across calls of one test). */
  async function addAt(stream: string, ms: number, count: number, payload = 'x'): Promise<string[]> {
    const ids: string[] = [];
    const pipe = redis.pipeline();
    for (let i = 1; i <= count; i++) {
      const id = `${ms}-${nextSeq}`;
      nextSeq++;
      ids.push(id);
      pipe.xadd(stream, id, 'p', payload);
    }
    for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
    return ids;
  }

  async function ids(stream: string): Promise<string[]> {
    return (await redis.xrange(stream, '-', '+')).map(([id]) => id);
  }

  async function readGroup(stream: string, group: string, count: number): Promise<string[]> {
    const reply = (await redis.xreadgroup(
      'GROUP',
      group,
      'c1',
      'COUNT',
      count,
      'STREAMS',
      stream,
      '>',
    )) as Array<[string, Array<[string, string[]]>]> | null;
    return reply?.[0]?.[1].map(([id]) => id) ?? [];
  }

  it('age-based trimming removes only entries older than the policy', async () => {
    const { stream, service } = await setup({ 'retention.telemetry.maxAge': HOUR });
    const now = await serverTime(redis);
    const old = [...(await addAt(stream, now - 3 * HOUR, 3)), ...(await addAt(stream, now - 2 * HOUR, 3))];
    const edge = await addAt(stream, now - HOUR + 60_000, 2); // 59 minutes old: kept
    const fresh = await addAt(stream, now - 1000, 4);

    const report = await service.runPass();

    expect(await ids(stream)).toEqual([...edge, ...fresh]);
    const s = report.streams.find((x) => x.key === stream)!;
    expect(s.removed).toEqual({ age: old.length, length: 0, cap: 0 });
    expect(report.lost).toBe(0);
    expect(service.health().healthy).toBe(true);
  });

  it('a lagging consumer group holds trimming back; once it catches up, trimming proceeds', async () => {
    const { stream, service, registry } = await setup({ 'retention.telemetry.maxAge': HOUR });
    const now = await serverTime(redis);
    const old = await addAt(stream, now - 2 * HOUR, 10);
    const fresh = await addAt(stream, now - 1000, 2);
    await redis.xgroup('CREATE', stream, 'slow', '0');
    const firstFour = await readGroup(stream, 'slow', 4);
    await redis.xack(stream, 'slow', ...firstFour);

    let report = await service.runPass();
    expect(await ids(stream)).toEqual([...old.slice(4), ...fresh]);
    expect(report.streams.find((x) => x.key === stream)!.blockedBy).toBe('slow');
    expect(await counterValue(registry, 'retention_blocked', { stream, group: 'slow' })).toBe(1);

    // Nothing more goes while the group stays where it is.
    report = await service.runPass();
    expect(await ids(stream)).toEqual([...old.slice(4), ...fresh]);

    const rest = await readGroup(stream, 'slow', 100);
    await redis.xack(stream, 'slow', ...rest);
    report = await service.runPass();
    expect(await ids(stream)).toEqual(fresh);
    expect(report.streams.find((x) => x.key === stream)!.blockedBy).toBeNull();
    expect(await counterValue(registry, 'retention_trimmed_entries_total', { stream, reason: 'age' })).toBe(
      10,
    );
    expect(await counterValue(registry, 'retention_forced_loss_entries_total', { stream })).toBe(0);
  });

  it('old entries still pending in a group are never trimmed under the soft policies', async () => {
    const { stream, service } = await setup({
      'retention.telemetry.maxAge': HOUR,
      'retention.telemetry.maxLen': 2,
    });
    const now = await serverTime(redis);
    const old = await addAt(stream, now - 5 * HOUR, 10);
    await redis.xgroup('CREATE', stream, 'workers', '0');
    const delivered = await readGroup(stream, 'workers', 10);
    expect(delivered).toEqual(old);
    // Entries 4 and 5 stay pending (a crashed consumer); everything else is acknowledged.
    await redis.xack(stream, 'workers', ...old.slice(0, 3), ...old.slice(5));

    for (let i = 0; i < 3; i++) await service.runPass();
    expect(await ids(stream)).toEqual(old.slice(3));

    await redis.xack(stream, 'workers', old[3]!, old[4]!);
    await service.runPass();
    expect(await ids(stream)).toEqual([]);
  });

  it('the length policy holds back for a group whose lag Redis cannot tell (after XDEL)', async () => {
    const { stream, service } = await setup({ 'retention.telemetry.maxLen': 2 });
    const now = await serverTime(redis);
    const all = await addAt(stream, now, 10);
    await redis.xgroup('CREATE', stream, 'g', '0');
    await redis.xack(stream, 'g', ...(await readGroup(stream, 'g', 5)));
    await redis.xdel(stream, all[7]!); // a deletion in the unread range: XINFO GROUPS lag becomes NULL
    const report = await service.runPass();
    expect(report.streams.find((x) => x.key === stream)!.groups[0]!.lag).toBeNull();
    expect(await ids(stream)).toEqual([all[5], all[6], all[8], all[9]]);
  });

  it('the length policy trims to maxLen when no group needs the entries', async () => {
    const { stream, service } = await setup({ 'retention.telemetry.maxLen': 5 });
    const now = await serverTime(redis);
    const all = await addAt(stream, now, 12);
    await redis.xgroup('CREATE', stream, 'g', '$');
    const report = await service.runPass();
    expect(await ids(stream)).toEqual(all.slice(7));
    expect(report.streams.find((x) => x.key === stream)!.removed.length).toBe(7);
  });

  it('exceeding the hard cap trims, and the forced-loss counter equals the unprocessed entries removed', async () => {
    const { stream, registry, make } = await setup({});
    const now = await serverTime(redis);
    const all = await addAt(stream, now - 1000, 3000, 'y'.repeat(100));
    await redis.xgroup('CREATE', stream, 'workers', '0');
    await redis.xgroup('CREATE', stream, 'audit', '0');
    const delivered = await readGroup(stream, 'workers', 1000);
    const acked = new Set(delivered.slice(0, 500));
    await redis.xack(stream, 'workers', ...acked);
    const auditAcked = new Set(await readGroup(stream, 'audit', 2500));
    await redis.xack(stream, 'audit', ...auditAcked);

    const memory = Number(await redis.memory('USAGE', stream, 'SAMPLES', 0));
    const cap = Math.floor(memory / 2);
    let time = Date.now();
    const capped = make(
      {
        'retention.telemetry.maxAge': HOUR,
        'retention.telemetry.maxBytes': cap,
        'retention.maxRemovePerCall': 700, // forces several calls in one pass
      },
      { ...systemClock, now: () => time },
    );

    const report = await capped.runPass();
    const remaining = new Set(await ids(stream));
    const removed = all.filter((id) => !remaining.has(id));
    expect(removed.length).toBeGreaterThan(1000);
    expect(removed).toEqual(all.slice(0, removed.length)); // from the head
    const s = report.streams.find((x) => x.key === stream)!;
    expect(s.removed.cap).toBe(removed.length);
    expect(s.calls).toBeGreaterThan(1);
    expect(s.memoryBytes).toBeLessThanOrEqual(cap);

    const lostWorkers = removed.filter((id) => !acked.has(id)).length;
    const lostAudit = removed.filter((id) => !auditAcked.has(id)).length;
    expect(lostWorkers).toBeGreaterThan(0);
    expect(
      await counterValue(registry, 'retention_forced_loss_entries_total', { stream, group: 'workers' }),
    ).toBe(lostWorkers);
    expect(
      await counterValue(registry, 'retention_forced_loss_entries_total', { stream, group: 'audit' }),
    ).toBe(lostAudit);
    expect(report.lost).toBe(lostWorkers + lostAudit);
    const health = capped.health();
    expect(health.healthy).toBe(false);
    expect(health.reasons.map((r) => r.code)).toEqual(['retention-forced-trim']);
    expect(health.reasons[0]).toMatchObject({ count: lostWorkers + lostAudit });
    expect(health.reasons[0]?.message).toContain('workers');

    // Under the cap again: nothing more is lost, and once health.lossWindow has passed it reports healthy.
    const next = await capped.runPass();
    expect(next.lost).toBe(0);
    expect(capped.health().healthy).toBe(false);
    time += 60_000;
    expect(capped.health().healthy).toBe(true);
  });

  it("trims devices' command streams lag-aware: pending and unread commands stay", async () => {
    const { keys, service, registry } = await setup({
      'retention.commands.maxAge': HOUR,
      'retention.commands.maxLen': 3,
    });
    const stream = keys.commands('pi-cmd');
    const now = await serverTime(redis);
    const old = await addAt(stream, now - 2 * HOUR, 8);
    await redis.xgroup('CREATE', stream, 'agent', '0');
    const delivered = await readGroup(stream, 'agent', 6);
    // Commands 0-2 have their result (acknowledged); 3-5 are still running (pending); 6-7 are unread.
    await redis.xack(stream, 'agent', ...delivered.slice(0, 3));

    let report = await service.runPass();
    expect(await ids(stream)).toEqual(old.slice(3));
    let s = report.streams.find((x) => x.key === stream)!;
    expect(s).toMatchObject({ family: 'commands', blockedBy: 'agent' });
    expect(s.removed.age).toBe(3);
    const label = { stream: keys.commands('*'), family: 'commands' };
    expect(await counterValue(registry, 'retention_trimmed_entries_total', { ...label, reason: 'age' })).toBe(
      3,
    );
    expect(await counterValue(registry, 'stream_length', label)).toBe(5);
    expect(
      await counterValue(registry, 'stream_group_pending', { stream: label.stream, group: 'agent' }),
    ).toBe(3);
    expect(await counterValue(registry, 'stream_group_lag', { stream: label.stream, group: 'agent' })).toBe(
      2,
    );
    expect(await counterValue(registry, 'retention_blocked', { stream: label.stream, group: 'agent' })).toBe(
      1,
    );
    expect(await counterValue(registry, 'retention_command_streams', {})).toBe(1);

    await redis.xack(stream, 'agent', ...delivered.slice(3), ...(await readGroup(stream, 'agent', 10)));
    report = await service.runPass();
    s = report.streams.find((x) => x.key === stream)!;
    expect(await ids(stream)).toEqual([]);
    expect(s.blockedBy).toBeNull();
    expect(report.lost).toBe(0);
  });

  it('a command stream with no group yet is held back whole by the soft policies; the cap counts its loss', async () => {
    const { keys, service, registry, make } = await setup({
      'retention.commands.maxAge': HOUR,
      'retention.commands.maxLen': 2,
    });
    const stream = keys.commands('pi-offline');
    const now = await serverTime(redis);
    const all = await addAt(stream, now - 3 * HOUR, 2000, 'z'.repeat(100));

    const report = await service.runPass();
    expect(await redis.xlen(stream)).toBe(2000);
    expect(report.streams.find((x) => x.key === stream)!.blockedBy).toBe('*');
    expect(report.lost).toBe(0);

    const memory = Number(await redis.memory('USAGE', stream, 'SAMPLES', 0));
    const capped = make({ 'retention.commands.maxBytes': Math.max(64 * 1024, Math.floor(memory / 2)) });
    const capReport = await capped.runPass();
    const left = await ids(stream);
    const removed = all.length - left.length;
    expect(removed).toBeGreaterThan(0);
    expect(left).toEqual(all.slice(removed));
    expect(capReport.lost).toBe(removed);
    expect(
      await counterValue(registry, 'retention_forced_loss_entries_total', {
        stream: keys.commands('*'),
        group: '*',
      }),
    ).toBe(removed);
    expect(capped.health().healthy).toBe(false);
  });

  it('finds command streams by an incremental SCAN: bounded per pass, every stream once per cycle', async () => {
    const { keys, make, registry } = await setup({});
    const devices = Array.from({ length: 150 }, (_, i) => `dev-${i}`);
    const pipe = redis.pipeline();
    const now = await serverTime(redis);
    for (const d of devices) {
      pipe.xadd(keys.commands(d), `${now - 2 * HOUR}-1`, 'p', 'old');
      pipe.xadd(keys.commands(d), `${now - 1000}-1`, 'p', 'new');
      pipe.xgroup('CREATE', keys.commands(d), 'agent', '$');
      pipe.set(keys.commandLedger(d, 'x'), '1'); // other keys the scan walks past
    }
    for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
    const service = make({ 'retention.commands.maxAge': HOUR, 'retention.commands.scanPerPass': 100 });

    const first = await service.runPass();
    const seen = new Set(first.streams.filter((x) => x.family === 'commands').map((x) => x.key));
    // The whole database holds other tests' keys too: one pass walks only ~100 keys, not all of them.
    expect(seen.size).toBeLessThan(devices.length);
    for (let i = 0; i < 500 && (await counterValue(registry, 'retention_command_streams', {})) === 0; i++) {
      for (const x of (await service.runPass()).streams) if (x.family === 'commands') seen.add(x.key);
    }
    expect(await counterValue(registry, 'retention_command_streams', {})).toBe(devices.length);
    expect([...seen].sort()).toEqual(devices.map((d) => keys.commands(d)).sort());
    for (const d of devices) expect(await redis.xlen(keys.commands(d))).toBe(1);
  });

  it('two trimmers at once never remove an entry a group still needs', async () => {
    const {
      keys,
      stream,
      service: a,
    } = await setup({
      'retention.telemetry.maxAge': HOUR,
      'retention.telemetry.maxLen': 50,
    });
    const clientB = createRedis(baseRedisConfig(server.url));
    clients.push(clientB);
    const b = new RetentionService(
      clientB,
      keys,
      options({ 'retention.telemetry.maxAge': HOUR, 'retention.telemetry.maxLen': 50 }),
      { logger: silentLogger() },
    );
    const now = await serverTime(redis);
    await redis.xgroup('CREATE', stream, 'fast', '0', 'MKSTREAM');
    await redis.xgroup('CREATE', stream, 'slow', '0');
    const added: string[] = [];
    let done = false;
    let trimmed = 0;
    const trimmer = async (s: RetentionService) => {
      while (!done) trimmed += (await s.runPass()).trimmed;
    };
    const trimmers = [trimmer(a), trimmer(b)];

    const received = { fast: [] as string[], slow: [] as string[] };
    const consume = async (group: 'fast' | 'slow', batch: number) => {
      const got = await readGroup(stream, group, batch);
      // Delivered entries stay pending while the trimmers run, then must still exist when acknowledged.
      await new Promise((r) => setImmediate(r));
      for (const id of got) expect((await redis.xrange(stream, id, id)).length).toBe(1);
      if (got.length) await redis.xack(stream, group, ...got);
      received[group].push(...got);
    };
    try {
      for (let round = 0; round < 40; round++) {
        added.push(...(await addAt(stream, now - 2 * HOUR, 50)));
        await consume('fast', 60);
        if (round % 2 === 0) await consume('slow', 70);
      }
      // Drain what is left (bounded: a trimmed entry would never be delivered).
      for (let i = 0; i < 10; i++) await consume('fast', 500);
      for (let i = 0; i < 10; i++) await consume('slow', 500);
    } finally {
      done = true;
      await Promise.all(trimmers);
    }

    // Every group got every entry, in order: nothing was trimmed before it was delivered and acknowledged.
    expect(received.fast).toEqual(added);
    expect(received.slow).toEqual(added);
    expect(trimmed).toBeGreaterThan(0);
    await a.runPass();
    expect(await redis.xlen(stream)).toBe(0);
  });
});

forEachTarget(
  'retention pass over every family',
  (target) => {
    it('trims each family by its own policy and keeps what a group still needs', async () => {
      const keys = new Keys(randomPrefix(), 4);
      const client = createRedis(target().config);
      await waitReady(client, 'test', 10_000);
      try {
        const c = target().client;
        const now = await serverTime(client);
        const old = `${now - 2 * HOUR}`;
        const streams = [
          ...keys.allTelemetryStreams(),
          keys.results(),
          keys.presence(),
          keys.rejected(),
          keys.deadLetters(),
        ];
        for (const s of streams) {
          await c.xadd(s, `${old}-1`, 'p', '1');
          await c.xadd(s, `${old}-2`, 'p', '2');
          await c.xadd(s, `${now - 1000}-1`, 'p', '3');
        }
        await c.xgroup('CREATE', keys.telemetryStream(2), 'slow', '0');
        await c.xreadgroup('GROUP', 'slow', 'x', 'COUNT', 1, 'STREAMS', keys.telemetryStream(2), '>');
        // Command streams of devices in different slots (on a cluster, on different masters).
        const commandStreams = ['pi-a', 'pi-b', 'pi-c', 'pi-d'].map((d) => keys.commands(d));
        for (const s of commandStreams) {
          await c.xadd(s, `${old}-1`, 'p', '1');
          await c.xadd(s, `${now - 1000}-1`, 'p', '2');
          await c.xgroup('CREATE', s, 'agent', '$');
        }
        const o = options({
          'retention.telemetry.maxAge': HOUR,
          'retention.deadletter.maxAge': 3 * HOUR,
          'retention.commands.maxAge': HOUR,
        });
        const report = await new RetentionService(client, keys, o, { logger: silentLogger() }).runPass();
        expect(report.errors).toEqual([]);
        const lengths = Object.fromEntries(await Promise.all(streams.map(async (s) => [s, await c.xlen(s)])));
        expect(lengths).toEqual({
          [keys.telemetryStream(0)]: 1,
          [keys.telemetryStream(1)]: 1,
          [keys.telemetryStream(2)]: 3, // 'slow' has the first entry pending
          [keys.telemetryStream(3)]: 1,
          [keys.results()]: 3, // no limits on the other families in this test
          [keys.presence()]: 3,
          [keys.rejected()]: 3,
          [keys.deadLetters()]: 3, // younger than its 3 h
        });
        for (const s of commandStreams) expect(await c.xlen(s), s).toBe(1);
      } finally {
        client.disconnect();
      }
    });
  },
  ALL_SERVERS,
);
