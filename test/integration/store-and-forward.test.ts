/**
 * Store-and-forward (issue 4; docs/guarantees.md §1) with a real
 * redis-server and the agent as a child process: Redis outages, an agent
 * killed during one, a torn journal record, a full disk budget, and a Redis
 * crash with appendfsync always. Every test checks the stream entry by entry
 * against the sequence numbers the agent produced.
 */
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import { redisSchema } from '#shared/redis/options.js';
import { scanJournal } from '../../device/journal/journal.js';
import { encodeRecord } from '../../device/journal/record.js';
import { type AgentProcess, startAgentProcess } from '../harness/agent-process.js';
import { freePort } from '../harness/ports.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { forEachServer, type ServerKind } from '../harness/server-kind.js';
import { readStream, waitFor } from '../harness/streams.js';

const DEVICE = 'dev-saf';
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Run {
  agent: AgentProcess;
  metrics(): Promise<string>;
}

interface Setup {
  redis: RedisServer;
  dir: string;
  keys: Keys;
  start(extra?: Record<string, string | number | boolean>): Promise<Run>;
  /** Sequence numbers in the device's stream, in stream order. */
  streamSeqs(): Promise<number[]>;
}

async function setup(server: ServerKind, aof: 'always' | 'everysec' = 'everysec'): Promise<Setup> {
  const redis = await startRedis({ local: true, aof, server });
  const dir = mkdtempSync(join(tmpdir(), 'saf-agent-'));
  cleanups.push(async () => {
    await redis.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const prefix = randomPrefix();
  const keys = new Keys(prefix, redisSchema['redis.partitions'].default);
  const client = redis.client();
  client.on('error', () => {
    // The server is stopped on purpose; reads happen only while it runs.
  });
  cleanups.push(() => client.disconnect());
  return {
    redis,
    dir,
    keys,
    start: async (extra = {}) => {
      const port = await freePort();
      const agent = startAgentProcess({
        'device.id': DEVICE,
        'device.dataDir': dir,
        'redis.url': redis.url,
        'redis.keyPrefix': prefix,
        'redis.connectTimeout': 2000,
        sensors: 'constant',
        'sensors.constant.interval': 10,
        'producer.appendTimeout': 1000,
        'agent.shutdownTimeout': 2000,
        'metrics.port': port,
        'log.level': 'debug',
        ...extra,
      });
      cleanups.push(async () => {
        await agent.kill('SIGKILL');
      });
      await agent.waitForLog((l) => l.msg === 'agent started');
      return {
        agent,
        metrics: async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text(),
      };
    },
    streamSeqs: async () => {
      const stored = await readStream(client, keys.telemetryStreamFor(DEVICE));
      return stored.map((e) => e.seq);
    },
  };
}

/**
 * A TCP proxy in front of Redis for the one failure a stopped server cannot
 * stage on demand: Redis executes a batch and the reply never arrives.
 * `pass` forwards both ways; `swallow` forwards commands but drops replies;
 * `down` closes every connection and refuses new ones.
 */
async function startProxy(targetUrl: string) {
  const target = new URL(targetUrl);
  let mode: 'pass' | 'swallow' | 'down' = 'pass';
  const open = new Set<Socket>();
  const server = createServer((client) => {
    if (mode === 'down') {
      client.destroy();
      return;
    }
    const upstream = netConnect(Number(target.port), target.hostname);
    for (const sock of [client, upstream]) {
      open.add(sock);
      sock.on('error', () => {});
      sock.on('close', () => {
        open.delete(sock);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (mode === 'pass') client.write(d);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const sock of open) sock.destroy();
        server.close(() => r());
      }),
  );
  return {
    url: `redis://127.0.0.1:${port}`,
    set(next: typeof mode) {
      mode = next;
      if (next === 'down') for (const sock of open) sock.destroy();
    },
  };
}

/** The value of a metric line, e.g. metric(text, 'journal_unsent_entries'). */
function metric(text: string, name: string, label = ''): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      if (label && !line.includes(label)) continue;
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return 0;
}

async function waitMetric(run: Run, name: string, ok: (v: number) => boolean, timeoutMs = 20_000) {
  return waitFor(
    async () => {
      const v = metric(await run.metrics(), name);
      return ok(v) ? v : undefined;
    },
    timeoutMs,
    `${name}`,
  );
}

/** Waits until Redis has acknowledged the whole journal backlog (after at least one replay). */
async function waitDrained(run: Run, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    async () => {
      const text = await run.metrics();
      return metric(text, 'journal_replayed_total') > 0 && metric(text, 'journal_unsent_entries') === 0;
    },
    timeoutMs,
    'the journal to drain',
  );
}

/** Stops the agent gracefully; returns the last sequence number it handed out. */
async function stopAgent(run: Run): Promise<number> {
  expect(await run.agent.kill('SIGTERM')).toBe(0);
  const stopped = run.agent.logs().find((l) => l.msg === 'agent stopped');
  return Number(stopped?.seq);
}

function startedSeq(run: Run): number {
  return Number(run.agent.logs().find((l) => l.msg === 'agent started')?.seq);
}

const range = (a: number, b: number) => Array.from({ length: Math.max(0, b - a + 1) }, (_, i) => a + i);
const sorted = (xs: Iterable<number>) => [...xs].sort((a, b) => a - b);

/** Positions where an entry comes after a larger sequence number: live data that overtook the backlog. */
function overtaken(seqs: readonly number[]): number[] {
  const out: number[] = [];
  let max = 0;
  for (const s of seqs) {
    if (s < max) out.push(s);
    max = Math.max(max, s);
  }
  return out;
}

/** Sequence numbers acknowledged according to the agent's debug log. */
function ackedSeqs(run: Run): Set<number> {
  const acked = new Set<number>();
  for (const l of run.agent.logs()) {
    if (l.msg !== 'telemetry acknowledged') continue;
    for (const part of String(l.acked).split(',')) {
      const [a, b] = part.split('-').map(Number);
      for (const s of range(a!, b ?? a!)) acked.add(s);
    }
  }
  return acked;
}

/** Stops Redis once live data flows and waits for a backlog; returns the highest seq stored before. */
async function outage(s: Setup, run: Run, minUnsent: number): Promise<number> {
  const stored = await waitFor(
    async () => {
      const seqs = await s.streamSeqs();
      return seqs.length >= 50 ? seqs : undefined;
    },
    20_000,
    'live entries before the outage',
  );
  await s.redis.stop();
  const before = Math.max(...stored);
  await waitMetric(run, 'journal_unsent_entries', (v) => v >= minUnsent);
  // Let the last buffered batch reach the file (journal.flushInterval), so disk holds what the metric said.
  await new Promise((r) => setTimeout(r, 300));
  return before;
}

forEachServer('store-and-forward', (kind) => {
  afterAll(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('Redis stopped and restarted: every seq exactly once, live data reaches the stream during the replay', async () => {
    const s = await setup(kind);
    const run = await s.start({ 'journal.replayRate': 100 });
    const outageStarted = Date.now();
    await outage(s, run, 200);
    // The oldest unsent entry is about as old as the outage (device time), and none once drained.
    const age = metric(await run.metrics(), 'journal_oldest_unsent_age_seconds');
    expect(age).toBeGreaterThan(0.1);
    expect(age).toBeLessThanOrEqual((Date.now() - outageStarted) / 1000 + 1);
    await s.redis.start();
    await waitDrained(run);
    expect(metric(await run.metrics(), 'journal_oldest_unsent_age_seconds')).toBe(0);
    const last = await stopAgent(run);
    const seqs = await s.streamSeqs();
    expect(sorted(seqs)).toEqual(range(1, last));
    // Backlog entries behind newer (live) ones: live data did not wait for the replay.
    expect(overtaken(seqs).length).toBeGreaterThan(100);
  });

  it('ordered mode: every seq exactly once and in order', async () => {
    const s = await setup(kind);
    const run = await s.start({ 'journal.replay': 'ordered', 'journal.replayRate': 1000 });
    await outage(s, run, 200);
    await s.redis.start();
    await waitDrained(run);
    // Live data flows again once the backlog is through.
    const before = (await s.streamSeqs()).length;
    await waitFor(
      async () => (await s.streamSeqs()).length > before + 50,
      20_000,
      'live entries after the replay',
    );
    const last = await stopAgent(run);
    const seqs = await s.streamSeqs();
    expect(seqs).toEqual(range(1, last));
  });

  it('agent SIGKILLed during the outage: after Redis and then the agent restart, every produced seq exactly once', async () => {
    const s = await setup(kind);
    const first = await s.start();
    await outage(s, first, 150);
    await first.agent.kill('SIGKILL');
    const journaled = scanJournal(join(s.dir, 'journal')).entries.map((e) => e.entry.seq);
    expect(journaled.length).toBeGreaterThanOrEqual(150);
    await s.redis.start();
    const beforeOutage = await s.streamSeqs();
    // What the first run produced and kept: in Redis before the outage, or on disk. It must be
    // one contiguous run from 1: only the tail not yet written at the kill may be missing.
    const firstRun = new Set([...beforeOutage, ...journaled]);
    const x = Math.max(...firstRun);
    expect(sorted(firstRun)).toEqual(range(1, x));

    const second = await s.start();
    const resumedAt = startedSeq(second);
    expect(resumedAt).toBeGreaterThanOrEqual(x);
    await waitDrained(second);
    const last = await stopAgent(second);
    const seqs = await s.streamSeqs();
    expect(seqs.length).toBe(new Set(seqs).size);
    expect(sorted(seqs)).toEqual([...range(1, x), ...range(resumedAt + 1, last)]);
  });

  it('agent SIGKILLed in the middle of a replay: after a restart, every produced seq exactly once', async () => {
    // The replay resumes at the persisted committed offset (up to journal.commitInterval behind,
    // plus the chunk in flight): what it sends again is refused by the idempotent append.
    const s = await setup(kind);
    const opts = { 'journal.replayRate': 100 };
    const first = await s.start(opts);
    await outage(s, first, 400);
    await s.redis.start();
    await waitMetric(first, 'journal_replayed_total', (v) => v >= 100);
    const unsentAtKill = metric(await first.metrics(), 'journal_unsent_entries');
    expect(unsentAtKill).toBeGreaterThan(100);
    await first.agent.kill('SIGKILL');
    // Let Redis finish what the killed agent's connection had already sent.
    await new Promise((r) => setTimeout(r, 300));
    const inRedis = await s.streamSeqs();
    const journaled = scanJournal(join(s.dir, 'journal')).entries.map((e) => e.entry.seq);
    // Killed mid-replay: part of the backlog is in Redis, the rest still on disk.
    expect(journaled.length).toBeGreaterThan(100);
    expect(journaled.filter((n) => !inRedis.includes(n)).length).toBeGreaterThan(100);
    // The first run's entries are all in Redis or on disk (only the newest, in memory, may be missing).
    const firstRun = new Set([...inRedis, ...journaled]);
    const x = Math.max(...firstRun);
    expect(sorted(firstRun)).toEqual(range(1, x));

    const second = await s.start(opts);
    const resumedAt = startedSeq(second);
    expect(resumedAt).toBeGreaterThanOrEqual(x);
    await waitDrained(second);
    const last = await stopAgent(second);
    const seqs = await s.streamSeqs();
    expect(seqs.length).toBe(new Set(seqs).size);
    expect(sorted(seqs)).toEqual([...range(1, x), ...range(resumedAt + 1, last)]);
  });

  it('a torn last journal record is skipped with a warning; the rest is delivered', async () => {
    const s = await setup(kind);
    const first = await s.start();
    await outage(s, first, 100);
    await stopAgent(first);
    const dir = join(s.dir, 'journal');
    const journaled = scanJournal(dir).entries.map((e) => e.entry.seq);
    const lastSeg = readdirSync(dir)
      .filter((f) => f.endsWith('.seg'))
      .sort()
      .at(-1)!;
    const path = join(dir, lastSeg);
    truncateSync(path, statSync(path).size - 7);
    const tornSeq = journaled.at(-1)!;

    await s.redis.start();
    const beforeOutage = await s.streamSeqs();
    const second = await s.start();
    const warning = second.agent.logs().find((l) => String(l.msg).includes('torn or corrupt record skipped'));
    expect(warning).toMatchObject({ level: 40, reason: 'torn record' });
    await waitDrained(second);
    expect(metric(await second.metrics(), 'journal_torn_records_total')).toBe(1);
    const last = await stopAgent(second);
    const seqs = await s.streamSeqs();
    expect(seqs.length).toBe(new Set(seqs).size);
    const expected = new Set([
      ...beforeOutage,
      ...journaled.slice(0, -1),
      ...range(startedSeq(second) + 1, last),
    ]);
    expect(sorted(seqs)).toEqual(sorted(expected));
    expect(seqs).not.toContain(tornSeq);
  });

  it('a corrupt record in the middle of a segment: the rest is delivered, the lost entries are counted (replayRate=0)', async () => {
    // Bad storage, not a crash: a record in the middle of the first segment is clobbered, so that
    // segment is cut there while the next ones still start where they did. The replay must skip
    // the lost indices (not stall), count them as dropped, and with no rate limit not hang.
    const s = await setup(kind);
    const opts = { 'journal.segmentBytes': '8KiB', 'journal.replayRate': 0 };
    const first = await s.start(opts);
    await outage(s, first, 300);
    await stopAgent(first);
    const dir = join(s.dir, 'journal');
    const segs = readdirSync(dir)
      .filter((f) => f.endsWith('.seg'))
      .sort();
    expect(segs.length).toBeGreaterThanOrEqual(3);
    const scanned = scanJournal(dir).entries;
    const firstSeg = Number(segs[0]!.slice(0, 20));
    const secondSeg = Number(segs[1]!.slice(0, 20));
    const inFirst = scanned.filter((e) => e.index < secondSeg);
    const keep = Math.floor(inFirst.length / 2);
    // Byte offset of record `keep` of the first segment: the sizes of the records before it.
    const offset = inFirst.slice(0, keep).reduce((sum, e) => sum + encodeRecord(e.entry).length, 0);
    const fd = openSync(join(dir, segs[0]!), 'r+');
    writeSync(fd, Buffer.alloc(4, 0xff), 0, 4, offset);
    closeSync(fd);
    const lostSeqs = inFirst.slice(keep).map((e) => e.entry.seq);
    expect(inFirst[0]!.index).toBeGreaterThanOrEqual(firstSeg);

    await s.redis.start();
    const beforeOutage = await s.streamSeqs();
    const second = await s.start(opts);
    const warning = second.agent.logs().find((l) => String(l.msg).includes('torn or corrupt record skipped'));
    expect(warning).toMatchObject({ level: 40, lostEntries: lostSeqs.length });
    await waitDrained(second);
    const text = await second.metrics();
    expect(metric(text, 'agent_samples_dropped_total', 'journal_corrupt')).toBe(lostSeqs.length);
    expect(metric(text, 'journal_torn_records_total')).toBe(lostSeqs.length);
    const last = await stopAgent(second);
    const seqs = await s.streamSeqs();
    expect(seqs.length).toBe(new Set(seqs).size);
    const lost = new Set(lostSeqs);
    const expected = new Set([
      ...beforeOutage,
      ...scanned.map((e) => e.entry.seq).filter((n) => !lost.has(n)),
      ...range(startedSeq(second) + 1, last),
    ]);
    expect(sorted(seqs)).toEqual(sorted(expected));
  });

  for (const policy of ['drop-oldest', 'drop-newest'] as const) {
    it(`full budget, ${policy}: the policy holds, the drop counter equals what is missing, and it recovers`, async () => {
      const s = await setup(kind);
      const run = await s.start({
        'journal.maxBytes': '32KiB',
        'journal.segmentBytes': '8KiB',
        'journal.fullPolicy': policy,
        'journal.replayRate': 100,
      });
      const before = await outage(s, run, 100);
      await waitMetric(run, 'agent_samples_dropped_total', (v) => v >= 100);
      const text = await run.metrics();
      expect(metric(text, 'journal_bytes')).toBeLessThanOrEqual(32 * 1024);
      await s.redis.start();
      await waitDrained(run);
      const stored = (await s.streamSeqs()).length;
      await waitFor(
        async () => (await s.streamSeqs()).length > stored + 30,
        20_000,
        'live entries after recovery',
      );
      const dropped = metric(await run.metrics(), 'agent_samples_dropped_total', 'journal_full');
      const last = await stopAgent(run);

      const seqs = await s.streamSeqs();
      expect(seqs.length).toBe(new Set(seqs).size);
      const present = new Set(seqs);
      const missing = range(1, last).filter((n) => !present.has(n));
      expect(missing.length).toBe(dropped);
      expect(missing).toEqual(range(missing[0]!, missing.at(-1)!));
      // The outage's backlog (a few entries taken while the agent first connected are journaled too).
      const backlog = overtaken(seqs).filter((n) => n > before);
      expect(backlog.length).toBeGreaterThan(50);
      if (policy === 'drop-oldest') {
        // Batches in flight when Redis went away (sent, outcome unknown) are held and sent again,
        // not dropped (docs/store-and-forward.md): they may arrive late, older than the dropped
        // ones. All the rest of the backlog is newer than every dropped entry.
        const held = backlog.filter((n) => n < missing[0]!);
        expect(held.length).toBeLessThanOrEqual(20);
        expect(Math.min(...backlog.filter((n) => n > missing[0]!))).toBeGreaterThan(missing.at(-1)!);
      } else expect(Math.max(...backlog)).toBeLessThan(missing[0]!);
      // Logged once per episode, not per entry, and the episode ended.
      const episodes = run.agent.logs().filter((l) => String(l.msg).startsWith('journal full'));
      expect(episodes.map((l) => l.level)).toEqual([40, 30]);
    });
  }

  it('full budget, drop-oldest: a batch Redis executed but never answered is not counted as dropped', async () => {
    const s = await setup(kind);
    const proxy = await startProxy(s.redis.url);
    const run = await s.start({
      'redis.url': proxy.url,
      'journal.maxBytes': '32KiB',
      'journal.segmentBytes': '8KiB',
      'journal.replayRate': 100,
    });
    await waitFor(async () => (await s.streamSeqs()).length >= 50, 20_000, 'live entries');
    // Batches reach Redis but their replies are lost, then the connection dies: the agent
    // journals them as failed although they are in the stream.
    proxy.set('swallow');
    const swallowedFrom = Math.max(...(await s.streamSeqs())) + 1;
    await waitFor(
      async () => (await s.streamSeqs()).filter((n) => n >= swallowedFrom).length >= 5,
      20_000,
      'batches executed without a reply',
    );
    proxy.set('down');
    // Long enough for drop-oldest to delete the segment holding those batches.
    await waitMetric(run, 'agent_samples_dropped_total', (v) => v >= 150);
    const inRedis = (await s.streamSeqs()).filter((n) => n >= swallowedFrom);
    expect(inRedis.length).toBeGreaterThanOrEqual(5);
    proxy.set('pass');
    await waitDrained(run);
    const text = await run.metrics();
    const dropped = metric(text, 'agent_samples_dropped_total', 'journal_full');
    const last = await stopAgent(run);
    const seqs = await s.streamSeqs();
    expect(seqs.length).toBe(new Set(seqs).size);
    const present = new Set(seqs);
    const missing = range(1, last).filter((n) => !present.has(n));
    expect(missing.length).toBe(dropped);
    expect(missing.length).toBeGreaterThan(0);
    for (const n of inRedis) expect(missing).not.toContain(n);
  });

  it('appends not acknowledged within producer.appendTimeout go to the journal and arrive exactly once', async () => {
    const s = await setup(kind);
    const run = await s.start({ 'producer.appendTimeout': 300 });
    await waitFor(async () => (await s.streamSeqs()).length >= 50, 20_000, 'live entries');
    // Writes hang (the connection stays up): batches time out and are journaled.
    const admin = s.redis.client();
    cleanups.push(() => admin.disconnect());
    await admin.call('CLIENT', 'PAUSE', '2000', 'WRITE');
    await waitMetric(run, 'journal_written_total', (v) => v >= 50);
    await waitDrained(run);
    const last = await stopAgent(run);
    expect(sorted(await s.streamSeqs())).toEqual(range(1, last));
  });

  it('SIGTERM while Redis hangs (CLIENT PAUSE): batches in flight are journaled, a restart delivers every seq once', async () => {
    // Writes hang while the agent stops: its flush times out with batches still in flight. They
    // must not vanish when the journal closes and the connection goes: they are journaled as
    // uncertain (Redis may run them once unpaused) and the idempotent append sorts them out.
    const s = await setup(kind);
    const opts = {
      'producer.appendTimeout': 20_000,
      'producer.lingerMs': 100,
      'agent.shutdownTimeout': 1000,
    };
    const first = await s.start(opts);
    await waitFor(async () => (await s.streamSeqs()).length >= 50, 20_000, 'live entries');
    const admin = s.redis.client();
    cleanups.push(() => admin.disconnect());
    await admin.call('CLIENT', 'PAUSE', '30000', 'WRITE');
    // Long enough for the in-flight window to fill with batches that hang.
    await new Promise((r) => setTimeout(r, 1500));
    const stoppedAt = await stopAgent(first);
    const closed = first.agent.logs().find((l) => l.msg === 'journal closed');
    expect(Number(closed?.inFlightJournaled)).toBeGreaterThan(0);
    await admin.call('CLIENT', 'UNPAUSE');

    const second = await s.start(opts);
    expect(startedSeq(second)).toBe(stoppedAt);
    await waitDrained(second);
    const last = await stopAgent(second);
    const seqs = await s.streamSeqs();
    expect(seqs.length).toBe(new Set(seqs).size);
    expect(sorted(seqs)).toEqual(range(1, last));
  });

  it('Redis killed and restarted (AOF, appendfsync always): every acknowledged entry is in the stream', async () => {
    const s = await setup(kind, 'always');
    const run = await s.start();
    await waitFor(async () => (await s.streamSeqs()).length >= 100, 20_000, 'live entries');
    await s.redis.kill();
    await waitMetric(run, 'journal_unsent_entries', (v) => v >= 50);
    await s.redis.start();
    await waitDrained(run);
    const last = await stopAgent(run);
    const acked = ackedSeqs(run);
    const seqs = await s.streamSeqs();
    const present = new Set(seqs);
    expect(acked.size).toBeGreaterThan(100);
    expect([...acked].filter((n) => !present.has(n))).toEqual([]);
    expect(sorted(seqs)).toEqual(range(1, last));
  });
});
