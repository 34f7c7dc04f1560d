/**
 * The command path on a real local Redis Cluster: the ledger and command
 * stream live in the device's slot, the results stream and its publish marker
 * in another; a command sent twice still takes effect once, a crash after the
 * handler still reports the recorded effect (and fixes it in the ledger), and
 * each command has one result.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildCommand, commandStatus, sendCommand, waitForResult } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import type { AgentProcess } from '../harness/agent-process.js';
import {
  effects,
  fixFailedFirst,
  journalPhase,
  readResults,
  resultsByCommand,
  startCommandAgent,
  tempDataDir,
} from '../harness/commands.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisClusterHandle, startRedisCluster } from '../harness/redis-cluster.js';
import { waitFor } from '../harness/streams.js';

let cluster: RedisClusterHandle;
let client: ReturnType<RedisClusterHandle['client']>;
const agents: AgentProcess[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster();
  client = cluster.client();
});
afterAll(async () => {
  for (const a of agents) await a.kill('SIGKILL').catch(() => undefined);
  client.disconnect();
  await cluster.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const clusterAgent = (
  keys: Keys,
  device: string,
  dir: string,
  extra: Record<string, string | number | boolean> = {},
) => {
  const a = startCommandAgent(cluster.url, keys, device, dir, {
    'redis.cluster': true,
    'redis.clusterNodes': cluster.seeds.slice(1).join(','),
    ...extra,
  });
  agents.push(a);
  return a;
};

it('runs commands for devices on different slots, once each, with one result each', async () => {
  const keys = new Keys(randomPrefix(), 4);
  const devices = ['cl-a', 'cl-b', 'cl-c'];
  const dir = Object.fromEntries(devices.map((d) => [d, tempDataDir()]));
  dirs.push(...Object.values(dir));
  for (const d of devices) clusterAgent(keys, d, dir[d]!);
  const sent = [];
  for (const d of devices) {
    const command = buildCommand({ name: 'test.effect', ttlMs: 60_000 });
    sent.push({
      d,
      first: await sendCommand(client, keys, d, { name: 'test.effect', ttlMs: 60_000, id: command.id }),
    });
    const again = await sendCommand(client, keys, d, { name: 'test.effect', ttlMs: 60_000, id: command.id });
    expect(again.duplicate).toBe(true);
  }
  for (const { d, first } of sent) {
    const r = await waitForResult(client, keys, d, first.command.id, 30_000);
    expect(r).toMatchObject({ status: 'succeeded', deviceId: d });
    expect(effects(dir[d]!).get(first.command.id)).toBe(1);
  }
  const byCommand = resultsByCommand(await readResults(client, keys));
  expect(byCommand.size).toBe(3);
  for (const list of byCommand.values()) expect(list).toHaveLength(1);
});

it('kill after the handler but before the ack: the recorded effect is reported once, not repeated', async () => {
  const keys = new Keys(randomPrefix(), 4);
  const dir = tempDataDir();
  dirs.push(dir);
  const sent = await sendCommand(client, keys, 'cl-k', { name: 'test.effect', ttlMs: 60_000 });
  const a = clusterAgent(keys, 'cl-k', dir, { 'commands.testDelayAfterHandler': '10s' });
  await waitFor(async () => journalPhase(dir, sent.command.id) === 'done', 30_000, 'effect recorded');
  expect(effects(dir).get(sent.command.id)).toBe(1);
  await a.kill('SIGKILL');
  clusterAgent(keys, 'cl-k', dir);
  const r = await waitForResult(client, keys, 'cl-k', sent.command.id, 30_000);
  expect(r).toMatchObject({ status: 'succeeded', output: { effect: sent.command.id } });
  expect(effects(dir).get(sent.command.id)).toBe(1);
  expect(await readResults(client, keys)).toHaveLength(1);
  // The ledger (device slot) holds the same terminal result, not `running`.
  const ledger = await commandStatus(client, keys, 'cl-k', sent.command.id);
  expect(ledger).toMatchObject({ status: 'succeeded', attempts: 1 });
  expect(ledger.result).toEqual(r);
});

it('killed after its effect, claimed by another agent with its own data directory: the effect happens once', async () => {
  const keys = new Keys(randomPrefix(), 4);
  const [dirA, dirB] = [tempDataDir(), tempDataDir()];
  dirs.push(dirA, dirB);
  const effect = await sendCommand(client, keys, 'cl-x', { name: 'test.effect', ttlMs: 60_000 });
  const ping = await sendCommand(client, keys, 'cl-x', { name: 'ping', ttlMs: 60_000 });
  const a = clusterAgent(keys, 'cl-x', dirA, {
    'commands.consumer': 'a',
    'commands.testDelayAfterHandler': '10s',
  });
  await waitFor(async () => journalPhase(dirA, effect.command.id) === 'done', 30_000, 'effect recorded');
  await a.kill('SIGKILL');
  clusterAgent(keys, 'cl-x', dirB, { 'commands.consumer': 'b' });
  const rEffect = await waitForResult(client, keys, 'cl-x', effect.command.id, 30_000);
  const rPing = await waitForResult(client, keys, 'cl-x', ping.command.id, 30_000);
  expect(['succeeded', 'unknown']).toContain(rEffect.status);
  expect(rPing.status).toBe('succeeded');
  expect(effects(dirA, dirB).get(effect.command.id)).toBe(1);
  expect(await readResults(client, keys)).toHaveLength(2);
});

it('a result fixed in the ledger while the handler ran wins: published and dead-lettered once, then acked', async () => {
  const keys = new Keys(randomPrefix(), 4);
  const dir = tempDataDir();
  dirs.push(dir);
  const sent = await sendCommand(client, keys, 'cl-race', { name: 'test.effect', ttlMs: 60_000 });
  clusterAgent(keys, 'cl-race', dir, { 'commands.testDelayAfterHandler': '3s' });
  await waitFor(async () => journalPhase(dir, sent.command.id) === 'done', 30_000, 'effect recorded');
  // Another consumer fixed a `failed` result first (as if it had claimed the entry).
  await fixFailedFirst(client, keys, 'cl-race', sent);
  const pending = async () =>
    ((await client.xpending(keys.commands('cl-race'), 'agent')) as [number, ...unknown[]])[0];
  await waitFor(async () => (await pending()) === 0, 30_000, 'ack');
  const results = await readResults(client, keys);
  expect(results).toHaveLength(1);
  expect(results[0]).toMatchObject({ status: 'failed', message: 'fixed first elsewhere' });
  const dead = await client.xrange(keys.deadLetters(), '-', '+');
  expect(dead).toHaveLength(1);
  expect(dead[0]![1]).toContain('fixed first elsewhere');
  expect(effects(dir).get(sent.command.id)).toBe(1);
});
