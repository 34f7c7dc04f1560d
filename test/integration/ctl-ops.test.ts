/**
 * The operator's tools against a real Redis, run as the `ctl` child process:
 * `ctl streams` and `ctl device` report what retention and the projection
 * see, and `ctl dlq replay` re-runs a dead-lettered command exactly once
 * however often it is replayed (the agent executes it; its effect log counts).
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMAND_VERSION, commandFields, fieldMap, resultFields } from '#shared/commands/codec.js';
import { buildCommand, queueCommand, sendCommand, waitForResult } from '#shared/commands/send.js';
import { encodeEnvelope, envelopeFields } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRedis, type RedisClient, waitReady } from '#shared/redis/connect.js';
import { projectionOptions } from '../../gateway/projection/options.js';
import { ProjectionService } from '../../gateway/projection/service.js';
import { type AgentProcess, runScript } from '../harness/agent-process.js';
import { effects, readResults, startCommandAgent, tempDataDir } from '../harness/commands.js';
import { randomPrefix } from '../harness/prefix.js';
import { waitExit } from '../harness/process.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { baseRedisConfig } from '../harness/targets.js';

describe('ctl streams, device, dlq', () => {
  let server: RedisServer;
  let redis: ReturnType<RedisServer['client']>;
  let client: RedisClient;
  const agents: AgentProcess[] = [];
  const dirs: string[] = [];

  beforeAll(async () => {
    server = await startRedis({ local: true });
    redis = server.client();
    client = createRedis(baseRedisConfig(server.url));
    await waitReady(client, 'test', 10_000);
  });
  afterAll(async () => {
    for (const a of agents) await a.kill('SIGKILL').catch(() => undefined);
    client.disconnect();
    redis.disconnect();
    await server.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function ctl(keys: Keys, ...args: string[]): Promise<{ code: number | null; out: string }> {
    const p = runScript('ctl/cli.ts', [
      ...args,
      '--redis-url',
      server.url,
      '--redis-key-prefix',
      keys.prefix,
      '--redis-partitions',
      String(keys.partitions),
    ]);
    const code = await waitExit(p.child, 30_000);
    return { code, out: p.output() };
  }

  it('ctl streams shows length, groups, lag, pending and the oldest pending age', async () => {
    const keys = new Keys(randomPrefix(), 2);
    const stream = keys.telemetryStream(1);
    for (let i = 0; i < 5; i++) await redis.xadd(stream, '*', 'p', String(i));
    await redis.xgroup('CREATE', stream, 'readers', '0');
    await redis.xreadgroup('GROUP', 'readers', 'c', 'COUNT', 2, 'STREAMS', stream, '>');

    const { code, out } = await ctl(keys, 'streams', '--json');
    expect(code).toBe(0);
    const report = JSON.parse(out) as {
      streams: Array<{ key: string; family: string; length: number; memoryBytes: number; groups: unknown[] }>;
    };
    expect(report.streams.map((s) => s.key)).toEqual([
      keys.telemetryStream(0),
      stream,
      keys.results(),
      keys.presence(),
      keys.rejected(),
      keys.deadLetters(),
    ]);
    const s = report.streams[1]!;
    expect(s).toMatchObject({ family: 'telemetry', length: 5 });
    expect(s.memoryBytes).toBeGreaterThan(0);
    expect(s.groups).toEqual([
      expect.objectContaining({ name: 'readers', consumers: 1, pending: 2, lag: 3 }),
    ]);
    const age = (s.groups[0] as { oldestPendingAgeMs: number }).oldestPendingAgeMs;
    expect(age).toBeGreaterThanOrEqual(0);

    const table = await ctl(keys, 'streams');
    expect(table.code).toBe(0);
    expect(table.out).toMatch(
      new RegExp(`${stream.replace(/[{}]/g, '\\$&')}\\s+telemetry\\s+5\\s+.*readers\\s+1\\s+3\\s+2`),
    );
  });

  it('ctl streams commands shows every command stream with its group lag and pending', async () => {
    const keys = new Keys(randomPrefix(), 2);
    const a = keys.commands('pi-a');
    const b = keys.commands('pi-b');
    for (let i = 0; i < 4; i++) await redis.xadd(a, '*', 'p', String(i));
    await redis.xgroup('CREATE', a, 'agent', '0');
    // One command read and not yet acknowledged (running), three not yet read.
    await redis.xreadgroup('GROUP', 'agent', 'pi-a', 'COUNT', 1, 'STREAMS', a, '>');
    await redis.xadd(b, '*', 'p', 'queued before the device ever read'); // no group yet
    await redis.set(keys.commandLedger('pi-a', 'x'), '1'); // not a stream: not listed

    const { code, out } = await ctl(keys, 'streams', 'commands', '--json');
    expect(code).toBe(0);
    const report = JSON.parse(out) as {
      streams: Array<{ key: string; family: string; length: number; groups: unknown[] }>;
    };
    expect(report.streams.map((s) => [s.key, s.family, s.length])).toEqual([
      [a, 'commands', 4],
      [b, 'commands', 1],
    ]);
    expect(report.streams[0]!.groups).toEqual([
      expect.objectContaining({ name: 'agent', consumers: 1, pending: 1, lag: 3 }),
    ]);
    expect(report.streams[1]!.groups).toEqual([]);

    const table = await ctl(keys, 'streams', 'commands');
    expect(table.code).toBe(0);
    const esc = (k: string) => k.replace(/[{}]/g, '\\$&');
    expect(table.out).toMatch(new RegExp(`${esc(a)}\\s+commands\\s+4\\s+.*agent\\s+1\\s+3\\s+1`));
    expect(table.out).toMatch(new RegExp(`${esc(b)}\\s+commands\\s+1\\s`));
    expect(table.out).toContain('2 streams, 5 entries');
  });

  it('ctl device shows the projected state, last seen, recent telemetry and commands', async () => {
    const keys = new Keys(randomPrefix(), 2);
    for (const [seq, type, v] of [
      [2, 'temp', 22],
      [1, 'temp', 21],
      [3, 'hum', 40],
    ] as const) {
      const e = encodeEnvelope({ deviceId: 'pi-9', seq, time: 1_700_000_000_000 + seq, type, payload: v });
      await redis.xadd(keys.telemetryStreamFor('pi-9'), '*', ...envelopeFields(e));
    }
    const projection = new ProjectionService(client, keys, projectionOptions(), { logger: silentLogger() });
    await projection.ensureGroups();
    await projection.drain();

    const older = await sendCommand(client, keys, 'pi-9', {
      name: 'set-interval',
      ttlMs: 60_000,
      args: { s: 5 },
    });
    const newer = await sendCommand(client, keys, 'pi-9', { name: 'reboot', ttlMs: 60_000 });
    // The older one ended (as the agent's finishCommand-1.lua records it): its ledger holds the result.
    await redis.hset(
      keys.commandLedger('pi-9', older.command.id),
      'st',
      'failed',
      'at',
      '3',
      'r',
      JSON.stringify(
        resultFields({
          commandId: older.command.id,
          deviceId: 'pi-9',
          correlationId: older.command.correlationId,
          status: 'failed',
          attempts: 3,
          finishedAt: Date.now(),
          errorClass: 'Error',
          message: 'sensor busy',
          version: COMMAND_VERSION,
        }),
      ),
    );

    const { code, out } = await ctl(keys, 'device', 'pi-9', '--json');
    expect(code).toBe(0);
    const view = JSON.parse(out) as {
      lastSeen: number;
      state: { seq: number; readings: Record<string, { seq: number; payload: unknown }> };
      telemetry: Array<{ seq: number }>;
      commands: Array<Record<string, unknown>>;
    };
    // Newest first, each with its ledger's status (and the result of the finished one).
    expect(view.commands).toEqual([
      expect.objectContaining({
        id: newer.command.id,
        name: 'reboot',
        status: 'queued',
        entryId: newer.entryId,
      }),
      expect.objectContaining({
        id: older.command.id,
        name: 'set-interval',
        status: 'failed',
        attempts: 3,
        result: expect.objectContaining({ status: 'failed', message: 'sensor busy' }),
      }),
    ]);
    const shown = await ctl(keys, 'device', 'pi-9');
    expect(shown.code).toBe(0);
    expect(shown.out).toMatch(
      new RegExp(`${older.command.id}\\s+set-interval\\s+\\S+\\s+failed\\s+3\\s+sensor busy`),
    );
    expect(shown.out).toMatch(new RegExp(`${newer.command.id}\\s+reboot\\s+\\S+\\s+queued`));
    expect(view.state.seq).toBe(3);
    expect(view.state.readings).toMatchObject({
      temp: { seq: 2, payload: 22 },
      hum: { seq: 3, payload: 40 },
    });
    expect(view.lastSeen).toBeGreaterThan(0);
    expect(view.telemetry.map((e) => e.seq)).toEqual([3, 1, 2]);

    const unknown = await ctl(keys, 'device', 'nobody');
    expect(unknown.code).toBe(1);
  });

  it('ctl dlq replay re-runs a dead-lettered command once, however often it is replayed', async () => {
    const keys = new Keys(randomPrefix(), 2);
    const dir = tempDataDir();
    dirs.push(dir);
    // A dead letter as the agent's worker writes it (device/commands/worker.ts, docs/commands.md).
    const original = buildCommand({ name: 'test.effect', ttlMs: 5000, args: {} });
    const deadId = await redis.xadd(
      keys.deadLetters(),
      '*',
      'd',
      'pi-dlq',
      'i',
      original.id,
      'src',
      keys.commands('pi-dlq'),
      'e',
      '1-1',
      'ec',
      'Error',
      'm',
      'transient failure',
      'at',
      '3',
      'o',
      JSON.stringify(Object.fromEntries(fieldMap(commandFields(original)))),
    );

    const listed = await ctl(keys, 'dlq', 'list', '--json');
    expect(listed.code).toBe(0);
    const list = JSON.parse(listed.out) as { deadLetters: Array<{ id: string; replayStatus: string }> };
    expect(list.deadLetters).toEqual([expect.objectContaining({ id: deadId, replayStatus: 'none' })]);

    const first = await ctl(keys, 'dlq', 'replay', 'all', '--json');
    expect(first.code).toBe(0);
    const [outcome] = (JSON.parse(first.out) as { replays: Array<{ action: string; replayId: string }> })
      .replays;
    expect(outcome?.action).toBe('queued');
    const again = await ctl(keys, 'dlq', 'replay', deadId!);
    expect(again.code).toBe(0);
    expect(again.out).toContain('already-replayed');
    expect(again.out).toContain('0 queued, 1 already replayed');

    agents.push(startCommandAgent(server.url, keys, 'pi-dlq', dir));
    const result = await waitForResult(client, keys, 'pi-dlq', outcome!.replayId, 30_000);
    expect(result.status).toBe('succeeded');
    const third = await ctl(keys, 'dlq', 'replay', 'all', '--json');
    expect(JSON.parse(third.out)).toMatchObject({
      replays: [{ action: 'already-replayed', status: 'succeeded' }],
    });

    // A day after the replay's deadline its ledger (and the agent's dedup of it) is gone, while the
    // dead letter is kept for weeks: the replay record still says it ran, and nothing is queued.
    await redis.del(keys.commandLedger('pi-dlq', outcome!.replayId));
    const later = await ctl(keys, 'dlq', 'replay', 'all');
    expect(later.code).toBe(0);
    expect(later.out).toMatch(
      /already replayed at \d{4}-\d\d-\d\dT[\d:.]+Z \(entry [\d-]+\), result succeeded/,
    );
    expect(later.out).toContain('0 queued, 1 already replayed');
    const listed2 = JSON.parse((await ctl(keys, 'dlq', 'list', '--json')).out) as typeof list;
    expect(listed2.deadLetters[0]!.replayStatus).toBe('replayed');
    // Its result gone from the results stream too: still not queued again, its result unknown.
    await redis.del(keys.results());
    const latest = await ctl(keys, 'dlq', 'replay', deadId!, '--json');
    expect(JSON.parse(latest.out)).toMatchObject({
      replays: [{ action: 'already-replayed', status: 'unknown', replayId: outcome!.replayId }],
    });
    expect(await redis.pttl(keys.replayRecord('pi-dlq', deadId!))).toBeGreaterThan(59 * 86_400_000);

    await new Promise((r) => setTimeout(r, 1500)); // what a wrongly queued replay would need to run
    const ran = effects(dir);
    expect(ran.get(outcome!.replayId)).toBe(1);
    expect(ran.get(original.id)).toBeUndefined();
    expect(await redis.xlen(keys.commands('pi-dlq'))).toBe(1);
  });

  it('ctl dlq replay re-runs, once, a command the real worker dead-lettered', async () => {
    const keys = new Keys(randomPrefix(), 2);
    const dir = tempDataDir();
    dirs.push(dir);
    // Every attempt outlasts the 1.5 s handler timeout: three attempts, then the worker dead-letters it.
    const first = startCommandAgent(server.url, keys, 'pi-real', dir);
    agents.push(first);
    const original = buildCommand({ name: 'test.idempotent', ttlMs: 60_000, args: { sleepBeforeMs: 4000 } });
    await queueCommand(client, keys, 'pi-real', original);
    const failed = await waitForResult(client, keys, 'pi-real', original.id, 60_000);
    expect(failed).toMatchObject({ status: 'failed', attempts: 3, errorClass: 'HandlerTimeoutError' });
    const [dead] = await redis.xrange(keys.deadLetters(), '-', '+');
    expect(fieldMap(dead![1]).get('i')).toBe(original.id);
    await first.kill('SIGTERM');
    await waitExit(first.child, 20_000);

    // The operator gives the handler the time it needs, then replays: it runs once and succeeds.
    agents.push(
      startCommandAgent(server.url, keys, 'pi-real', dir, {
        'commands.handlerTimeout': '10s',
        'commands.claimIdle': '15s',
      }),
    );
    const replayed = await ctl(keys, 'dlq', 'replay', 'all', '--json');
    expect(replayed.code).toBe(0);
    const [outcome] = (JSON.parse(replayed.out) as { replays: Array<{ action: string; replayId: string }> })
      .replays;
    expect(outcome).toMatchObject({ action: 'queued', replayId: `${original.id}.replay-${dead![0]}` });
    const again = await ctl(keys, 'dlq', 'replay', 'all', '--json');
    expect(JSON.parse(again.out)).toMatchObject({ replays: [{ action: 'already-replayed' }] });
    const result = await waitForResult(client, keys, 'pi-real', outcome!.replayId, 60_000);
    expect(result).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(effects(dir).get(outcome!.replayId)).toBe(1);
    const results = (await readResults(client, keys)).filter((r) => r.commandId === outcome!.replayId);
    expect(results).toHaveLength(1);
    expect(await redis.xlen(keys.deadLetters())).toBe(1);
  });
});
