/**
 * The command promise (docs/guarantees.md §2) on a real Redis, with the
 * agent as a child process that the crash tests kill with SIGKILL: delivered
 * at least once, takes effect at most once per command id, every command ends
 * in exactly one terminal result, expired commands never run.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { commandFields, resultFields } from '#shared/commands/codec.js';
import {
  buildCommand,
  commandStatus,
  ResultWatcher,
  sendCommand,
  sendToGroup,
  waitForResult,
} from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import { scripts } from '#shared/redis/scripts.js';
import { type AgentProcess, runScript } from '../harness/agent-process.js';
import {
  effects,
  fixFailedFirst,
  journalPhase,
  readResults,
  reads,
  resultsByCommand,
  startCommandAgent,
  tempDataDir,
} from '../harness/commands.js';
import { randomPrefix } from '../harness/prefix.js';
import { waitExit } from '../harness/process.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { forEachServer } from '../harness/server-kind.js';
import { waitFor } from '../harness/streams.js';

forEachServer('control commands', (kind) => {
  let server: RedisServer;
  let client: ReturnType<RedisServer['client']>;
  const dirs: string[] = [];
  const agents: AgentProcess[] = [];

  beforeAll(async () => {
    server = await startRedis({ local: true, server: kind });
    client = server.client();
  });
  afterAll(async () => {
    for (const a of agents) await a.kill('SIGKILL').catch(() => undefined);
    client.disconnect();
    await server.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const setup = () => {
    const keys = new Keys(randomPrefix(), 4);
    const dir = tempDataDir();
    dirs.push(dir);
    return { keys, dir };
  };
  const agent = (
    keys: Keys,
    device: string,
    dir: string,
    extra: Record<string, string | number | boolean> = {},
  ) => {
    const a = startCommandAgent(server.url, keys, device, dir, extra);
    agents.push(a);
    return a;
  };
  const resultsOf = async (keys: Keys, n: number) =>
    waitFor(
      async () => {
        const r = await readResults(client, keys);
        return r.length >= n ? r : undefined;
      },
      30_000,
      `${n} results`,
    );
  const pending = async (keys: Keys, device: string) =>
    ((await client.xpending(keys.commands(device), 'agent')) as [number, ...unknown[]])[0];

  it('runs a command sent by the library and reports its result with timings', async () => {
    const { keys, dir } = setup();
    agent(keys, 'dev-a', dir);
    const sent = await sendCommand(client, keys, 'dev-a', { name: 'ping', ttlMs: 30_000 });
    const result = await waitForResult(client, keys, 'dev-a', sent.command.id, 20_000);
    expect(result).toMatchObject({ status: 'succeeded', name: 'ping', attempts: 1, output: { pong: true } });
    expect(result.deliveredAt).toBeGreaterThanOrEqual(sent.command.issuedAt);
    expect(result.finishedAt).toBeGreaterThanOrEqual(result.startedAt!);
    // ping is read-only, so it started at once; the ledger still has its receipt and start.
    const ledger = await commandStatus(client, keys, 'dev-a', sent.command.id);
    expect(ledger).toMatchObject({ status: 'succeeded', attempts: 1, deliveredAt: result.deliveredAt });
    expect(ledger.startedAt).toBe(result.startedAt);
  });

  it('sendAndWait listens before it queues: the result, and for a repeated id the stored one', async () => {
    const { keys, dir } = setup();
    agent(keys, 'dev-sw', dir);
    const watcher = new ResultWatcher(client, keys, 200);
    try {
      const first = await watcher.sendAndWait('dev-sw', { name: 'ping', ttlMs: 30_000 }, 20_000);
      expect(first.sent.duplicate).toBe(false);
      expect(first.result).toMatchObject({ status: 'succeeded', commandId: first.sent.command.id });
      // The same id again: nothing is queued and the result comes from the ledger, not the stream.
      const again = await watcher.sendAndWait(
        'dev-sw',
        { name: 'ping', ttlMs: 30_000, id: first.sent.command.id },
        5_000,
      );
      expect(again.sent).toMatchObject({ duplicate: true, existingStatus: 'succeeded' });
      expect(again.result).toEqual(first.result);
      expect(await client.xlen(keys.commands('dev-sw'))).toBe(1);
      // On this standalone server the enqueue script rang the gateways' doorbell once, for the one entry.
      expect((await client.xrange(keys.commandDoorbell(), '-', '+')).map(([, f]) => f)).toEqual([
        ['d', 'dev-sw'],
      ]);
    } finally {
      await watcher.stop();
    }
  });

  it('a read-only command whose ledger already ended reports that result once; nearer its deadline than the skew allowance it is not run', async () => {
    const { keys, dir } = setup();
    // Ended elsewhere before this agent read it (as a sweep or another consumer may have).
    const far = await sendCommand(client, keys, 'dev-ro', { name: 'test.read', ttlMs: 60_000 });
    const near = await sendCommand(client, keys, 'dev-ro', { name: 'test.read', ttlMs: 1500 });
    for (const s of [far, near]) await fixFailedFirst(client, keys, 'dev-ro', s);
    const live = await sendCommand(client, keys, 'dev-ro', { name: 'test.read', ttlMs: 60_000 });
    agent(keys, 'dev-ro', dir, { 'commands.clockSkewAllowance': '2s' });
    const results = await resultsOf(keys, 3);
    const byId = resultsByCommand(results);
    for (const s of [far, near]) {
      expect(byId.get(`dev-ro/${s.command.id}`)?.map((r) => r.message)).toEqual(['fixed first elsewhere']);
    }
    expect(byId.get(`dev-ro/${live.command.id}`)?.map((r) => r.status)).toEqual(['succeeded']);
    await waitFor(async () => (await pending(keys, 'dev-ro')) === 0, 10_000, 'acks');
    expect(results).toHaveLength(3);
    // Read-only, far from its deadline: it started at once and ran (changing nothing); the ledger's
    // result stands. Near its deadline the ledger was asked first, so it never ran.
    expect(reads(dir).get(far.command.id)).toBe(1);
    expect(reads(dir).has(near.command.id)).toBe(false);
    expect(reads(dir).get(live.command.id)).toBe(1);
  });

  it('a read-only command that runs longer than a moment shows running in the ledger', async () => {
    const { keys, dir } = setup();
    agent(keys, 'dev-ro3', dir);
    const sent = await sendCommand(client, keys, 'dev-ro3', {
      name: 'test.read',
      args: { sleepMs: 800 },
      ttlMs: 60_000,
    });
    await waitFor(
      async () => (await commandStatus(client, keys, 'dev-ro3', sent.command.id)).status === 'running',
      10_000,
      'running',
    );
    const result = await waitForResult(client, keys, 'dev-ro3', sent.command.id, 20_000);
    expect(result).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect((await commandStatus(client, keys, 'dev-ro3', sent.command.id)).attempts).toBe(1);
    expect(reads(dir).get(sent.command.id)).toBe(1);
  });

  it('a read-only command that throws is retried and counted like any other, up to the dead letter', async () => {
    const { keys, dir } = setup();
    agent(keys, 'dev-ro2', dir);
    const once = await sendCommand(client, keys, 'dev-ro2', {
      name: 'test.read',
      args: { failAttempts: 1 },
      ttlMs: 60_000,
    });
    const always = await sendCommand(client, keys, 'dev-ro2', {
      name: 'test.read',
      args: { failAttempts: 99 },
      ttlMs: 60_000,
    });
    const retried = await waitForResult(client, keys, 'dev-ro2', once.command.id, 20_000);
    expect(retried).toMatchObject({ status: 'succeeded', attempts: 2, output: { attempt: 2 } });
    const failed = await waitForResult(client, keys, 'dev-ro2', always.command.id, 20_000);
    expect(failed).toMatchObject({ status: 'failed', attempts: 3, errorClass: 'RangeError' });
    expect((await commandStatus(client, keys, 'dev-ro2', always.command.id)).attempts).toBe(3);
    expect(reads(dir).get(once.command.id)).toBe(2);
    expect(reads(dir).get(always.command.id)).toBe(3);
    expect(await client.xlen(keys.deadLetters())).toBe(1);
  });

  it('a command appended twice (and sent twice) takes effect once, with one result', async () => {
    const { keys, dir } = setup();
    const command = buildCommand({ name: 'test.effect', ttlMs: 60_000 });
    const stream = keys.commands('dev-dup');
    await client.xadd(stream, '*', ...commandFields(command));
    await client.xadd(stream, '*', ...commandFields(command));
    agent(keys, 'dev-dup', dir);
    const results = await resultsOf(keys, 1);
    // A retried send of the same id appends nothing.
    const again = await sendCommand(client, keys, 'dev-dup', {
      name: 'test.effect',
      ttlMs: 60_000,
      id: command.id,
    });
    expect(again.duplicate).toBe(true);
    await waitFor(
      async () => (await pending(keys, 'dev-dup')) === 0 && (await client.xlen(stream)) === 2,
      20_000,
      'acks',
    );
    expect(results.map((r) => r.status)).toEqual(['succeeded']);
    expect((await readResults(client, keys)).length).toBe(1);
    expect(effects(dir).get(command.id)).toBe(1);
  });

  it('rejects malformed entries with a reason and keeps going', async () => {
    const { keys, dir } = setup();
    const stream = keys.commands('dev-bad');
    const good = buildCommand({ name: 'ping', ttlMs: 60_000 });
    const fields = new Map(Object.entries(Object.fromEntries(chunk(commandFields(good)))));
    const variant = (change: Record<string, string | undefined>, id: string) => {
      const m = new Map(fields);
      m.set('i', id);
      for (const [k, v] of Object.entries(change)) {
        if (v === undefined) m.delete(k);
        else m.set(k, v);
      }
      return [...m].flat();
    };
    await client.xadd(stream, '*', ...variant({ n: undefined }, 'no-name'));
    await client.xadd(stream, '*', ...variant({ a: '{not json' }, 'bad-json'));
    await client.xadd(stream, '*', ...variant({ x: 'tomorrow' }, 'bad-type'));
    await client.xadd(stream, '*', 'garbage', 'entry');
    await client.xadd(stream, '*', ...commandFields(good));
    agent(keys, 'dev-bad', dir);
    const results = await resultsOf(keys, 5);
    const byId = new Map(results.map((r) => [r.commandId, r]));
    expect(byId.get('no-name')).toMatchObject({ status: 'rejected', errorClass: 'ValidationError' });
    expect(byId.get('no-name')?.message).toContain('name');
    expect(byId.get('bad-json')?.message).toContain('args');
    expect(byId.get('bad-type')?.message).toContain('deadline');
    expect(byId.get('')).toMatchObject({ status: 'rejected' });
    expect(byId.get('')?.message).toContain('id');
    expect(byId.get(good.id)).toMatchObject({ status: 'succeeded' });
    expect(await client.xlen(keys.rejected())).toBe(4);
    // A sender waiting on a rejected id learns it from the ledger.
    expect((await commandStatus(client, keys, 'dev-bad', 'bad-json')).status).toBe('rejected');
    await waitFor(async () => (await pending(keys, 'dev-bad')) === 0, 10_000, 'acks');
  });

  it('never runs an expired command; it ends expired', async () => {
    const { keys, dir } = setup();
    const sent = await sendCommand(client, keys, 'dev-exp', { name: 'test.effect', ttlMs: 1 });
    const live = await sendCommand(client, keys, 'dev-exp', { name: 'test.effect', ttlMs: 60_000 });
    await new Promise((r) => setTimeout(r, 20));
    agent(keys, 'dev-exp', dir);
    const expired = await waitForResult(client, keys, 'dev-exp', sent.command.id, 20_000);
    expect(expired).toMatchObject({ status: 'expired', attempts: 0 });
    expect((await waitForResult(client, keys, 'dev-exp', live.command.id, 20_000)).status).toBe('succeeded');
    expect(effects(dir).has(sent.command.id)).toBe(false);
    expect(effects(dir).get(live.command.id)).toBe(1);
  });

  it('dead-letters an always-failing command after the configured attempts while later commands flow', async () => {
    const { keys, dir } = setup();
    agent(keys, 'dev-poison', dir);
    const poison = await sendCommand(client, keys, 'dev-poison', { name: 'test.fail', ttlMs: 60_000 });
    const later = [];
    for (let i = 0; i < 5; i++)
      later.push(await sendCommand(client, keys, 'dev-poison', { name: 'test.effect', ttlMs: 60_000 }));
    const failed = await waitForResult(client, keys, 'dev-poison', poison.command.id, 20_000);
    expect(failed).toMatchObject({ status: 'failed', attempts: 3, errorClass: 'RangeError' });
    for (const s of later)
      expect((await waitForResult(client, keys, 'dev-poison', s.command.id, 20_000)).status).toBe(
        'succeeded',
      );
    const dead = await client.xrange(keys.deadLetters(), '-', '+');
    expect(dead).toHaveLength(1);
    const entry = Object.fromEntries(chunk(dead[0]![1]));
    expect(entry).toMatchObject({ i: poison.command.id, d: 'dev-poison', ec: 'RangeError', at: '3' });
    expect(entry.m).toContain('always fails');
    expect(JSON.parse(entry.o!)).toMatchObject({ i: poison.command.id, n: 'test.fail' });
  });

  it('kill during a handler: after restart nothing ran twice and each command has one result', async () => {
    const { keys, dir } = setup();
    // One killed after its effect (still inside the handler), one before it.
    const afterEffect = await sendCommand(client, keys, 'dev-k1', {
      name: 'test.effect',
      ttlMs: 60_000,
      args: { sleepAfterMs: 5000 },
    });
    const beforeEffect = await sendCommand(client, keys, 'dev-k1', {
      name: 'test.effect',
      ttlMs: 60_000,
      args: { sleepBeforeMs: 5000 },
    });
    const behind = await sendCommand(client, keys, 'dev-k1', { name: 'test.effect', ttlMs: 60_000 });
    let a = agent(keys, 'dev-k1', dir, { 'commands.handlerTimeout': '8s', 'commands.claimIdle': '10s' });
    await waitFor(async () => effects(dir).get(afterEffect.command.id) === 1, 20_000, 'first effect');
    await a.kill('SIGKILL');
    a = agent(keys, 'dev-k1', dir, { 'commands.handlerTimeout': '8s', 'commands.claimIdle': '10s' });
    await waitFor(
      async () => (await commandStatus(client, keys, 'dev-k1', beforeEffect.command.id)).status === 'running',
      20_000,
      'second started',
    );
    await a.kill('SIGKILL');
    agent(keys, 'dev-k1', dir);
    const r1 = await waitForResult(client, keys, 'dev-k1', afterEffect.command.id, 20_000);
    const r2 = await waitForResult(client, keys, 'dev-k1', beforeEffect.command.id, 20_000);
    const r3 = await waitForResult(client, keys, 'dev-k1', behind.command.id, 20_000);
    expect([r1.status, r2.status, r3.status]).toEqual(['unknown', 'unknown', 'succeeded']);
    const fx = effects(dir);
    expect(fx.get(afterEffect.command.id)).toBe(1);
    expect(fx.has(beforeEffect.command.id)).toBe(false);
    expect(fx.get(behind.command.id)).toBe(1);
    await waitFor(async () => (await pending(keys, 'dev-k1')) === 0, 10_000, 'acks');
    expect((await readResults(client, keys)).length).toBe(3);
  });

  it('kill after the handler but before the ack: the recorded effect is reported, not repeated', async () => {
    const { keys, dir } = setup();
    const sent = await sendCommand(client, keys, 'dev-k2', { name: 'test.effect', ttlMs: 60_000 });
    const a = agent(keys, 'dev-k2', dir, { 'commands.testDelayAfterHandler': '10s' });
    await waitFor(async () => journalPhase(dir, sent.command.id) === 'done', 20_000, 'effect recorded');
    expect(effects(dir).get(sent.command.id)).toBe(1);
    await a.kill('SIGKILL');
    expect(await pending(keys, 'dev-k2')).toBe(1);
    agent(keys, 'dev-k2', dir);
    const r = await waitForResult(client, keys, 'dev-k2', sent.command.id, 20_000);
    expect(r).toMatchObject({ status: 'succeeded', output: { effect: sent.command.id } });
    expect(effects(dir).get(sent.command.id)).toBe(1);
    await waitFor(async () => (await pending(keys, 'dev-k2')) === 0, 10_000, 'ack');
    expect((await readResults(client, keys)).length).toBe(1);
    // The ledger holds the terminal result too (not `running` until it expires), so a later
    // status query or wait is right.
    const ledger = await commandStatus(client, keys, 'dev-k2', sent.command.id);
    expect(ledger).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(ledger.result).toEqual(r);
    expect(await waitForResult(client, keys, 'dev-k2', sent.command.id, 5_000)).toEqual(r);
  });

  it('killed mid-handler and read again after its deadline: unknown (it ran), never expired, never run again', async () => {
    const { keys } = setup();
    const long = { 'commands.handlerTimeout': '30s', 'commands.claimIdle': '35s' };
    // Non-idempotent; idempotent (not rerun past its deadline either); non-idempotent whose
    // Redis ledger is then lost, so only the journal's `start` tells that it ran.
    const cases = [
      { device: 'dev-late-n', name: 'test.effect', dropLedger: false },
      { device: 'dev-late-i', name: 'test.idempotent', dropLedger: false },
      { device: 'dev-late-j', name: 'test.effect', dropLedger: true },
    ].map((c) => ({ ...c, dir: tempDataDir() }));
    dirs.push(...cases.map((c) => c.dir));
    const first = cases.map((c) => agent(keys, c.device, c.dir, long));
    await waitFor(async () => (await client.scard(keys.fleet())) === cases.length, 20_000, 'registration');
    const sent: Awaited<ReturnType<typeof sendCommand>>[] = [];
    for (const c of cases)
      sent.push(
        await sendCommand(client, keys, c.device, {
          name: c.name,
          ttlMs: 8000,
          args: { sleepAfterMs: 25_000 },
        }),
      );
    for (const [n, c] of cases.entries())
      await waitFor(
        async () => effects(c.dir).get(sent[n]!.command.id) === 1,
        20_000,
        `effect on ${c.device}`,
      );
    for (const a of first) await a.kill('SIGKILL');
    for (const [n, c] of cases.entries())
      if (c.dropLedger) await client.del(keys.commandLedger(c.device, sent[n]!.command.id));
    const deadline = Math.max(...sent.map((s) => s.command.deadline));
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now() + 500)));
    for (const c of cases) agent(keys, c.device, c.dir, long);
    for (const [n, c] of cases.entries()) {
      const r = await waitForResult(client, keys, c.device, sent[n]!.command.id, 20_000);
      expect(r, c.device).toMatchObject({ status: 'unknown', errorClass: 'Interrupted', attempts: 1 });
      expect(r.message).toContain('interrupted');
      expect(effects(c.dir).get(sent[n]!.command.id), c.device).toBe(1);
      await waitFor(async () => (await pending(keys, c.device)) === 0, 10_000, 'ack');
    }
  }, 90_000);

  it('an unknown command name ends rejected (UnknownCommand) and the worker keeps going', async () => {
    const { keys, dir } = setup();
    agent(keys, 'dev-unk', dir);
    const unknown = await sendCommand(client, keys, 'dev-unk', { name: 'no.such.command', ttlMs: 60_000 });
    const next = await sendCommand(client, keys, 'dev-unk', { name: 'test.effect', ttlMs: 60_000 });
    const r = await waitForResult(client, keys, 'dev-unk', unknown.command.id, 20_000);
    expect(r).toMatchObject({ status: 'rejected', errorClass: 'UnknownCommand', attempts: 0 });
    expect(r.message).toContain('no.such.command');
    expect(r.deliveredAt).toBeGreaterThan(0);
    expect((await waitForResult(client, keys, 'dev-unk', next.command.id, 20_000)).status).toBe('succeeded');
    expect(effects(dir).get(next.command.id)).toBe(1);
    await waitFor(async () => (await pending(keys, 'dev-unk')) === 0, 10_000, 'acks');
  });

  it('past its timeout, a non-idempotent handler ends unknown (not retried); an idempotent one is retried', async () => {
    const { keys, dir } = setup();
    agent(keys, 'dev-to', dir); // handler timeout 1.5 s
    const once = await sendCommand(client, keys, 'dev-to', {
      name: 'test.effect',
      ttlMs: 60_000,
      args: { sleepBeforeMs: 4000 },
    });
    const retried = await sendCommand(client, keys, 'dev-to', {
      name: 'test.idempotent',
      ttlMs: 60_000,
      args: { sleepBeforeMs: 4000, slowAttempts: 1 },
    });
    const r1 = await waitForResult(client, keys, 'dev-to', once.command.id, 20_000);
    expect(r1).toMatchObject({ status: 'unknown', errorClass: 'HandlerTimeoutError', attempts: 1 });
    const r2 = await waitForResult(client, keys, 'dev-to', retried.command.id, 20_000);
    expect(r2).toMatchObject({ status: 'succeeded', attempts: 2 });
    // A timed-out attempt may still take effect (the test handler does, once aborted): the
    // non-idempotent one took effect exactly once; the idempotent one ran again by its declaration.
    expect(effects(dir).get(once.command.id)).toBe(1);
    expect(effects(dir).get(retried.command.id)).toBe(2);
    expect(await client.xlen(keys.deadLetters())).toBe(0);
  });

  it('after a Redis error in the middle of a batch, the rest of it runs before newer commands', async () => {
    const { keys, dir } = setup();
    const a = agent(keys, 'dev-ord', dir);
    const warm = await sendCommand(client, keys, 'dev-ord', { name: 'ping', ttlMs: 60_000 });
    await waitForResult(client, keys, 'dev-ord', warm.command.id, 20_000); // reading new entries now
    const broken = buildCommand({ name: 'test.effect', ttlMs: 60_000 });
    const rest = buildCommand({ name: 'test.effect', ttlMs: 60_000 });
    // A ledger key of the wrong type: beginCommand fails with WRONGTYPE, a Redis error reply,
    // on the first entry of the batch, leaving the second one unprocessed (and pending).
    const ledger = keys.commandLedger('dev-ord', broken.id);
    await client.set(ledger, 'not a hash');
    const stream = keys.commands('dev-ord');
    // One transaction: the blocked reader is served after it, with both entries in one batch.
    await client
      .multi()
      .xadd(stream, '*', ...commandFields(broken))
      .xadd(stream, '*', ...commandFields(rest))
      .exec();
    await a.waitForLog((l) => String(l.err).includes('WRONGTYPE'), 20_000);
    const newer = await sendCommand(client, keys, 'dev-ord', { name: 'test.effect', ttlMs: 60_000 });
    await new Promise((r) => setTimeout(r, 1000));
    await client.del(ledger); // the error clears
    for (const c of [broken, rest, newer.command])
      expect((await waitForResult(client, keys, 'dev-ord', c.id, 20_000)).status).toBe('succeeded');
    const order = readFileSync(join(dir, 'effects.log'), 'utf8').split('\n').filter(Boolean);
    expect(order).toEqual([broken.id, rest.id, newer.command.id]);
  });

  it('a second agent process claims and finishes the pending commands of a killed one', async () => {
    const { keys, dir } = setup();
    const dirB = tempDataDir();
    dirs.push(dirB);
    const stuck = await sendCommand(client, keys, 'dev-c', {
      name: 'test.effect',
      ttlMs: 60_000,
      args: { sleepBeforeMs: 1000 },
    });
    const queued = [];
    for (let i = 0; i < 3; i++)
      queued.push(await sendCommand(client, keys, 'dev-c', { name: 'test.effect', ttlMs: 60_000 }));
    const a = agent(keys, 'dev-c', dir, { 'commands.consumer': 'a' });
    await waitFor(
      async () => (await commandStatus(client, keys, 'dev-c', stuck.command.id)).status === 'running',
      20_000,
      'running',
    );
    await a.kill('SIGKILL');
    // a read all four in one batch: they are pending for consumer a, which never comes back.
    agent(keys, 'dev-c', dirB, { 'commands.consumer': 'b' });
    const all = [stuck, ...queued];
    const results = await Promise.all(
      all.map((s) => waitForResult(client, keys, 'dev-c', s.command.id, 30_000)),
    );
    expect(results.map((r) => r.status)).toEqual(['unknown', 'succeeded', 'succeeded', 'succeeded']);
    const fx = effects(dir, dirB);
    for (const s of queued) expect(fx.get(s.command.id)).toBe(1);
    expect(fx.get(stuck.command.id) ?? 0).toBe(0);
    await waitFor(async () => (await pending(keys, 'dev-c')) === 0, 10_000, 'acks');
  });

  it('sends to a tag, a list and the whole fleet; each device runs it once', async () => {
    const { keys } = setup();
    const d = [tempDataDir(), tempDataDir(), tempDataDir()];
    dirs.push(...d);
    agent(keys, 'g1', d[0]!, { 'device.tags': 'site-a' });
    agent(keys, 'g2', d[1]!, { 'device.tags': 'site-a,drone' });
    agent(keys, 'g3', d[2]!);
    await waitFor(async () => (await client.scard(keys.fleet())) === 3, 20_000, 'registration');
    const group = await sendToGroup(
      client,
      keys,
      { tags: ['site-a'], devices: ['g1'] },
      { name: 'test.effect', ttlMs: 60_000 },
    );
    expect(group.map((s) => s.deviceId)).toEqual(['g1', 'g2']);
    const fleet = await sendToGroup(client, keys, { fleet: true }, { name: 'test.effect', ttlMs: 60_000 });
    expect(fleet.map((s) => s.deviceId)).toEqual(['g1', 'g2', 'g3']);
    for (const s of [...group, ...fleet]) {
      expect((await waitForResult(client, keys, s.deviceId, s.command.id, 20_000)).status).toBe('succeeded');
    }
    expect(effects(d[0]!).get(group[0]!.command.id)).toBe(1);
    expect(effects(d[1]!).get(group[0]!.command.id)).toBe(1);
    expect(effects(d[2]!).has(group[0]!.command.id)).toBe(false);
    for (const dir of d) expect(effects(dir).get(fleet[0]!.command.id)).toBe(1);
  });

  it('ctl command send --wait prints the result, and times out clearly for a device that never reads it', async () => {
    const { keys, dir } = setup();
    agent(keys, 'dev-cli', dir);
    const base = ['--redis-url', server.url, '--redis-key-prefix', keys.prefix, '--redis-partitions', '4'];
    const ok = runScript('ctl/cli.ts', [
      'command',
      'send',
      'dev-cli',
      'set-config',
      '{"key":"log.level","value":"info"}',
      '--ttl',
      '30s',
      '--wait',
      ...base,
    ]);
    expect(await waitExit(ok.child, 30_000)).toBe(0);
    expect(ok.output()).toContain('succeeded');
    const late = runScript('ctl/cli.ts', [
      'command',
      'send',
      'dev-offline',
      'ping',
      '--ttl',
      '30s',
      '--wait',
      '--wait-timeout',
      '500ms',
      ...base,
    ]);
    expect(await waitExit(late.child, 30_000)).toBe(4);
    expect(late.output()).toContain('last status: queued');
    const bad = runScript('ctl/cli.ts', ['command', 'send', 'dev-cli', 'ping', '{nope', ...base]);
    expect(await waitExit(bad.child, 30_000)).toBe(2);
    expect(bad.output()).toContain('not valid JSON');
  });

  it('concludeCommand-6.lua (standalone): fixes the first result, publishes once, dead-letters only failed, acks', async () => {
    const keys = new Keys(randomPrefix(), 4);
    const run = scripts(client);
    const stream = keys.commands('dev-cc');
    await client.xgroup('CREATE', stream, 'agent', '0', 'MKSTREAM');
    const entries: string[] = [];
    for (let i = 0; i < 3; i++) entries.push((await client.xadd(stream, '*', 'i', `c${i}`))!);
    await client.xreadgroup('GROUP', 'agent', 'me', 'COUNT', 10, 'STREAMS', stream, '>');
    const result = (id: string, entryId: string, status: 'succeeded' | 'failed') =>
      resultFields({
        commandId: id,
        deviceId: 'dev-cc',
        status,
        entryId,
        finishedAt: 1,
        attempts: 1,
        version: 1,
      });
    const conclude = (
      id: string,
      entryId: string,
      status: 'succeeded' | 'failed',
      dead: string[] = [],
      early: [number, number, string] | ['', '', ''] = ['', '', ''],
    ) => {
      const fields = result(id, entryId, status);
      return run.concludeCommand(
        keys.commandLedger('dev-cc', id),
        keys.results(),
        keys.publishedMarker(keys.results(), 'dev-cc', id),
        keys.deadLetters(),
        keys.publishedMarker(keys.deadLetters(), 'dev-cc', id),
        stream,
        Date.now() + 60_000,
        status,
        JSON.stringify(fields),
        1,
        60_000,
        0,
        'agent',
        entryId,
        dead.length,
        ...early,
        ...dead,
        ...fields,
      );
    };
    const pendingIds = async () =>
      ((await client.xpending(stream, 'agent', '-', '+', 10)) as [string][]).map((p) => p[0]);

    // First call: fixed, published, acked. Again (a redelivery): nothing new, acked.
    expect(await conclude('c0', entries[0]!, 'succeeded')).toEqual([1, 1, '', 1, 0]);
    expect(await conclude('c0', entries[0]!, 'succeeded')).toEqual([0, 1, '', 0, 0]);
    expect(await client.hget(keys.commandLedger('dev-cc', 'c0'), 'st')).toBe('succeeded');
    // A read-only command that started at once: its receipt and start are recorded with the result.
    expect(await conclude('c1', entries[1]!, 'succeeded', [], [1000, 1001, 'me'])).toEqual([1, 1, '', 1, 0]);
    expect(await client.hmget(keys.commandLedger('dev-cc', 'c1'), 'st', 'td', 'ts', 'by', 'at')).toEqual([
      'succeeded',
      '1000',
      '1001',
      'me',
      '1',
    ]);
    // The ledger holds a different result: it comes back; nothing is published, nor acked.
    await client.hset(
      keys.commandLedger('dev-cc', 'c2'),
      'st',
      'failed',
      'r',
      JSON.stringify(result('c2', entries[2]!, 'failed')),
    );
    const other = await conclude('c2', entries[2]!, 'succeeded');
    expect(other.slice(0, 2)).toEqual([0, 0]);
    expect(JSON.parse(other[2])).toEqual(result('c2', entries[2]!, 'failed'));
    expect(await pendingIds()).toEqual([entries[2]]);
    // Failed: the dead letter and the result, each once, and the ack, in one atomic call.
    await client.del(keys.commandLedger('dev-cc', 'c2'));
    const dead = ['d', 'dev-cc', 'i', 'c2', 'o', '{}'];
    expect(await conclude('c2', entries[2]!, 'failed', dead)).toEqual([1, 1, '', 1, 1]);
    expect(await conclude('c2', entries[2]!, 'failed', dead)).toEqual([0, 1, '', 0, 0]);
    expect(await pendingIds()).toEqual([]);
    const deadLetters = await client.xrange(keys.deadLetters(), '-', '+');
    expect(deadLetters.map(([, f]) => f)).toEqual([dead]);
    const published = await client.xrange(keys.results(), '-', '+');
    expect(published.map(([, f]) => f[1])).toEqual(['c0', 'c1', 'c2']);
  });

  it('a result fixed in the ledger while the handler ran wins: published and dead-lettered, once, then acked', async () => {
    const { keys, dir } = setup();
    const sent = await sendCommand(client, keys, 'dev-race', { name: 'test.effect', ttlMs: 60_000 });
    agent(keys, 'dev-race', dir, { 'commands.testDelayAfterHandler': '3s' });
    await waitFor(async () => journalPhase(dir, sent.command.id) === 'done', 20_000, 'effect recorded');
    // Another consumer fixed a `failed` result first (as if it had claimed the entry).
    await fixFailedFirst(client, keys, 'dev-race', sent);
    await waitFor(async () => (await pending(keys, 'dev-race')) === 0, 20_000, 'ack');
    const results = await readResults(client, keys);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 'failed', message: 'fixed first elsewhere' });
    const dead = await client.xrange(keys.deadLetters(), '-', '+');
    expect(dead).toHaveLength(1);
    const entry = Object.fromEntries(chunk(dead[0]![1]));
    expect(entry).toMatchObject({ i: sent.command.id, ec: 'RangeError', m: 'fixed first elsewhere' });
    expect(JSON.parse(entry.o!)).toMatchObject({ i: sent.command.id, n: 'test.effect' });
    expect(effects(dir).get(sent.command.id)).toBe(1);
  });

  it('killed after its effect, claimed by another agent with its own data directory: the effect happens once', async () => {
    // Only the ledger in Redis is shared: the second agent has no journal of the first one's work.
    const { keys, dir } = setup();
    const dirB = tempDataDir();
    dirs.push(dirB);
    const effect = await sendCommand(client, keys, 'dev-x', { name: 'test.effect', ttlMs: 60_000 });
    const read = await sendCommand(client, keys, 'dev-x', { name: 'test.read', ttlMs: 60_000 });
    const ping = await sendCommand(client, keys, 'dev-x', { name: 'ping', ttlMs: 60_000 });
    const a = agent(keys, 'dev-x', dir, {
      'commands.consumer': 'a',
      'commands.testDelayAfterHandler': '10s',
    });
    await waitFor(async () => journalPhase(dir, effect.command.id) === 'done', 20_000, 'effect recorded');
    await a.kill('SIGKILL');
    agent(keys, 'dev-x', dirB, { 'commands.consumer': 'b' });
    const [rEffect, rRead, rPing] = await Promise.all([
      waitForResult(client, keys, 'dev-x', effect.command.id, 30_000),
      waitForResult(client, keys, 'dev-x', read.command.id, 30_000),
      waitForResult(client, keys, 'dev-x', ping.command.id, 30_000),
    ]);
    expect(['succeeded', 'unknown']).toContain(rEffect.status);
    expect(effects(dir, dirB).get(effect.command.id)).toBe(1);
    // Read-only commands have no effect to repeat: they run (again) where they are claimed.
    expect([rRead.status, rPing.status]).toEqual(['succeeded', 'succeeded']);
    expect(resultsByCommand(await readResults(client, keys)).size).toBe(3);
    expect((await readResults(client, keys)).length).toBe(3);
    await waitFor(async () => (await pending(keys, 'dev-x')) === 0, 10_000, 'acks');
  });

  it('1,000 commands with random agent kills: one result each, no effect twice', async () => {
    const { keys, dir } = setup();
    const ids: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const name = i % 10 === 9 ? 'ping' : 'test.effect';
      ids.push((await sendCommand(client, keys, 'dev-chaos', { name, ttlMs: 120_000 })).command.id);
    }
    let kills = 0;
    const roundDirs: string[] = [];
    const deadline = Date.now() + 45_000;
    while (kills < 6 && Date.now() < deadline) {
      const before = await client.xlen(keys.results());
      if (before >= 1000) break;
      // Every other round on a fresh data directory: then only the ledger keeps an effect from repeating.
      const round = kills % 2 === 0 ? dir : tempDataDir();
      if (round !== dir) {
        dirs.push(round);
        roundDirs.push(round);
      }
      const a = agent(keys, 'dev-chaos', round);
      // Kill it at a random moment once it is making progress.
      await waitFor(
        async () => (await client.xlen(keys.results())) > before || undefined,
        20_000,
        'progress',
      );
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 400));
      await a.kill('SIGKILL');
      kills++;
    }
    agent(keys, 'dev-chaos', dir);
    const results = await resultsOf(keys, 1000);
    await waitFor(async () => (await pending(keys, 'dev-chaos')) === 0, 20_000, 'acks');
    const grouped = resultsByCommand(await readResults(client, keys));
    expect(grouped.size).toBe(1000);
    for (const id of ids) expect(grouped.get(`dev-chaos/${id}`)?.length).toBe(1);
    const fx = effects(dir, ...roundDirs);
    for (const [, n] of fx) expect(n).toBe(1);
    expect(roundDirs.length).toBeGreaterThan(0);
    for (const r of results) {
      if (r.name === 'test.effect' && r.status === 'succeeded') expect(fx.get(r.commandId)).toBe(1);
      if (r.status === 'expired' || r.status === 'failed' || r.status === 'rejected')
        expect(fx.has(r.commandId)).toBe(false);
    }
    expect(kills).toBeGreaterThan(0);
    expect(results.filter((r) => r.status === 'succeeded').length).toBeGreaterThan(900);
  }, 120_000);
});

function chunk(fields: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) out.push([fields[i]!, fields[i + 1]!]);
  return out;
}
