/**
 * Commands to MQTT devices through the gateway (broker mode), sent with the
 * same API as for agents: a round trip to an online device; an offline device
 * that comes back before the deadline; one that does not (expired); one that
 * receives the command and never answers (unknown). Every command ends in one
 * terminal result; none is delivered after its deadline.
 *
 * Recording: a device's result the gateway could not record is not
 * acknowledged (no PUBACK) until it is in the results stream; a terminal
 * ledger whose result never reached the stream is published by the sweep.
 * `failed` results are dead-lettered. Agents that never come back: their
 * queued commands end `expired`, once, even with two gateways sweeping; a
 * command an agent started is never ended by the sweep.
 *
 * Doorbell: with the fallback poll far away (10 minutes), commands still reach
 * a connected device at once, on a standalone server and on a Cluster (the
 * doorbell path); with a doorbell entry lost (never rung, its stream deleted,
 * or the doorbell off), the fallback poll still delivers.
 */
import type { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { encodeCommand, resultFields } from '#shared/commands/codec.js';
import { registerDevice, sendCommand, waitForResult } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import { scripts } from '#shared/redis/scripts.js';
import { readResults, resultsByCommand } from '../harness/commands.js';
import { type RunningGateway, startGateway } from '../harness/gateway.js';
import { type CommandMessage, commandDevice } from '../harness/mqtt-device.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { waitFor } from '../harness/streams.js';
import { forEachTarget } from '../harness/targets.js';

let redis: RedisServer;
let client: Redis;
let gw: RunningGateway;
let keys: Keys;
const devices: MqttClient[] = [];

beforeAll(async () => {
  redis = await startRedis({ local: true });
  client = redis.client();
  const prefix = randomPrefix();
  keys = new Keys(prefix, 4);
  gw = await startGateway({
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'commands.pollInterval': 50,
    'commands.sweepInterval': 200,
  });
});
afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.endAsync(true)));
});
afterAll(async () => {
  await gw.stop();
  client.disconnect();
  await redis.destroy();
});

/** An MQTT device that answers commands (or not) on its result topic; closed after each test. */
async function device(
  id: string,
  answer: boolean,
  received: CommandMessage[] = [],
  url = gw.url,
): Promise<MqttClient> {
  const d = await commandDevice(url, id, { answer, received });
  devices.push(d);
  return d;
}

it('runs a command round trip to an online MQTT device', async () => {
  await device('cmd-on', true);
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), 'cmd-on')) === 1,
    10_000,
    'registered',
  );
  const sent = await sendCommand(client, keys, 'cmd-on', { name: 'ping', args: { n: 1 }, ttlMs: 20_000 });
  const result = await waitForResult(client, keys, 'cmd-on', sent.command.id, 20_000);
  expect(result).toMatchObject({ status: 'succeeded', output: { echo: { n: 1 } }, name: 'ping' });
});

it('holds a command for an offline device and delivers it when the device comes back before the deadline', async () => {
  const first = await device('cmd-back', true);
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), 'cmd-back')) === 1,
    10_000,
    'registered',
  );
  await first.endAsync();
  devices.splice(devices.indexOf(first), 1);
  const sent = await sendCommand(client, keys, 'cmd-back', { name: 'reboot', ttlMs: 20_000 });
  // Offline: the gateway holds it (the ledger stays short of a result).
  await new Promise((r) => setTimeout(r, 300));
  expect(await client.hget(keys.commandLedger('cmd-back', sent.command.id), 'st')).toBe('queued');
  const received: CommandMessage[] = [];
  await device('cmd-back', true, received);
  const result = await waitForResult(client, keys, 'cmd-back', sent.command.id, 20_000);
  expect(result.status).toBe('succeeded');
  expect(received.map((c) => c.id)).toContain(sent.command.id);
});

it('ends a command as expired when the device does not come back, and never delivers it late', async () => {
  const first = await device('cmd-gone', true);
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), 'cmd-gone')) === 1,
    10_000,
    'registered',
  );
  await first.endAsync();
  devices.splice(devices.indexOf(first), 1);
  const sent = await sendCommand(client, keys, 'cmd-gone', { name: 'reboot', ttlMs: 800 });
  const result = await waitForResult(client, keys, 'cmd-gone', sent.command.id, 20_000);
  expect(result.status).toBe('expired');
  // Coming back after the deadline, the device gets nothing.
  const received: CommandMessage[] = [];
  await device('cmd-gone', true, received);
  await new Promise((r) => setTimeout(r, 500));
  expect(received).toEqual([]);
  const results = await client.xlen(keys.results());
  expect(results).toBeGreaterThan(0);
});

it('ends a command as unknown when the device received it and never answered', async () => {
  const received: CommandMessage[] = [];
  await device('cmd-mute', false, received);
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), 'cmd-mute')) === 1,
    10_000,
    'registered',
  );
  const sent = await sendCommand(client, keys, 'cmd-mute', { name: 'ping', ttlMs: 1000 });
  const result = await waitForResult(client, keys, 'cmd-mute', sent.command.id, 20_000);
  expect(result.status).toBe('unknown');
  expect(received.map((c) => c.id)).toEqual([sent.command.id]);
});

/** A gateway of its own (own key prefix), for tests that break keys of their prefix. */
async function ownGateway(extra: Record<string, unknown> = {}): Promise<{ gw: RunningGateway; keys: Keys }> {
  const prefix = randomPrefix();
  const own = await startGateway({
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'commands.pollInterval': 50,
    'commands.sweepInterval': 200,
    ...extra,
  });
  return { gw: own, keys: new Keys(prefix, 4) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('does not acknowledge a result it could not record, and records it once when Redis takes it', async () => {
  const { gw: own, keys: k } = await ownGateway();
  try {
    const received: CommandMessage[] = [];
    const d = await device('rec-1', false, received, own.url);
    await waitFor(async () => (await client.sismember(k.mqttDevices(), 'rec-1')) === 1, 10_000, 'registered');
    const sent = await sendCommand(client, k, 'rec-1', { name: 'ping', ttlMs: 60_000 });
    await waitFor(async () => received.length === 1, 10_000, 'command received');
    // The results stream refuses appends (wrong type): the ledger step works, the publish fails.
    await client.set(k.results(), 'not a stream');
    let acked = false;
    const reply = d
      .publishAsync('devices/rec-1/results', JSON.stringify({ id: sent.command.id, status: 'succeeded' }), {
        qos: 1,
      })
      .then(() => {
        acked = true;
      });
    await waitFor(
      async () => (await client.hget(k.commandLedger('rec-1', sent.command.id), 'st')) === 'succeeded',
      10_000,
      'ledger terminal',
    );
    await sleep(1500);
    expect(acked).toBe(false);
    await client.del(k.results());
    await reply;
    const results = resultsByCommand(await readResults(client, k)).get(`rec-1/${sent.command.id}`) ?? [];
    expect(results.map((r) => r.status)).toEqual(['succeeded']);
  } finally {
    await own.stop();
  }
});

it('publishes the result of a terminal ledger that never reached the results stream', async () => {
  const { gw: own, keys: k } = await ownGateway();
  try {
    await registerDevice(client, k, 'rec-2', []);
    await client.sadd(k.mqttDevices(), 'rec-2');
    const sent = await sendCommand(client, k, 'rec-2', { name: 'ping', ttlMs: 60_000 });
    // As a gateway that died between finishCommand and publishOnce leaves it.
    const fields = resultFields({
      commandId: sent.command.id,
      deviceId: 'rec-2',
      status: 'succeeded',
      finishedAt: Date.now(),
      attempts: 1,
      version: 1,
    });
    await scripts(client).finishCommand(
      k.commandLedger('rec-2', sent.command.id),
      Date.now() + 120_000,
      'succeeded',
      JSON.stringify(fields),
      1,
    );
    const result = await waitForResult(client, k, 'rec-2', sent.command.id, 20_000);
    expect(result.status).toBe('succeeded');
    await waitFor(
      async () =>
        (resultsByCommand(await readResults(client, k)).get(`rec-2/${sent.command.id}`) ?? []).length > 0,
      20_000,
      'result published',
    );
    await sleep(1000);
    expect(resultsByCommand(await readResults(client, k)).get(`rec-2/${sent.command.id}`)).toHaveLength(1);
  } finally {
    await own.stop();
  }
});

it('dead-letters a command the device reports failed, as the agent does', async () => {
  const received: CommandMessage[] = [];
  const d = await device('cmd-fail', false, received);
  await waitFor(
    async () => (await client.sismember(keys.mqttDevices(), 'cmd-fail')) === 1,
    10_000,
    'registered',
  );
  const sent = await sendCommand(client, keys, 'cmd-fail', {
    name: 'reboot',
    args: { hard: true },
    ttlMs: 20_000,
  });
  await waitFor(async () => received.length === 1, 10_000, 'command received');
  await d.publishAsync(
    'devices/cmd-fail/results',
    JSON.stringify({ id: sent.command.id, status: 'failed', errorClass: 'FlashError', message: 'no flash' }),
    { qos: 1 },
  );
  const result = await waitForResult(client, keys, 'cmd-fail', sent.command.id, 20_000);
  expect(result).toMatchObject({ status: 'failed', errorClass: 'FlashError' });
  const letters = await waitFor(
    async () => {
      const all = await client.xrange(keys.deadLetters(), '-', '+');
      const mine = all.filter(([, f]) => f[f.indexOf('i') + 1] === sent.command.id);
      return mine.length > 0 ? mine : undefined;
    },
    10_000,
    'dead letter',
  );
  expect(letters).toHaveLength(1);
  const f = new Map<string, string>();
  const raw = letters[0]![1];
  for (let i = 0; i < raw.length; i += 2) f.set(raw[i]!, raw[i + 1]!);
  expect(f.get('d')).toBe('cmd-fail');
  expect(f.get('src')).toBe(keys.commands('cmd-fail'));
  expect(f.get('ec')).toBe('FlashError');
  expect(f.get('m')).toBe('no flash');
  expect(f.get('at')).toBe('1');
  expect(f.get('e')).toBe(sent.entryId);
  expect(JSON.parse(f.get('o')!)).toMatchObject({ n: 'reboot' });
});

it('ends a queued command of an agent that never comes back as expired, once, with two gateways sweeping', async () => {
  const { gw: a, keys: k } = await ownGateway({ 'gateway.id': 'sweep-a' });
  const b = await startGateway({
    'redis.url': redis.url,
    'redis.keyPrefix': k.prefix,
    'redis.partitions': 4,
    'gateway.id': 'sweep-b',
    'commands.sweepInterval': 200,
  });
  try {
    // An agent registers (as device/commands/worker.ts does) and is never seen again.
    await registerDevice(client, k, 'agent-gone', []);
    const sent = await sendCommand(client, k, 'agent-gone', { name: 'reboot', ttlMs: 500 });
    const result = await waitForResult(client, k, 'agent-gone', sent.command.id, 20_000);
    expect(result).toMatchObject({ status: 'expired', attempts: 0 });
    // A started command past its deadline is the agent's to end: the sweep leaves it.
    const busy = await sendCommand(client, k, 'agent-gone', { name: 'reboot', ttlMs: 400 });
    const begun = await scripts(client).beginCommand(
      k.commandLedger('agent-gone', busy.command.id),
      Date.now(),
      busy.command.deadline,
      busy.command.deadline + 60_000,
      'agent-gone',
      'start',
    );
    expect(begun[0]).toBe('started');
    await sleep(2000);
    const all = resultsByCommand(await readResults(client, k));
    expect(all.get(`agent-gone/${sent.command.id}`)?.map((r) => r.status)).toEqual(['expired']);
    expect(all.get(`agent-gone/${busy.command.id}`)).toBeUndefined();
    expect(await client.hget(k.commandLedger('agent-gone', busy.command.id), 'st')).toBe('running');
    // The agent's stream is never read by gateways: nothing of theirs is pending there.
    const groups = (await client.xinfo('GROUPS', k.commands('agent-gone'))) as unknown[];
    expect(groups).toEqual([]);
  } finally {
    await b.stop();
    await a.stop();
  }
});

it('ends a command an agent received and never reported as unknown, once, after the grace; the agent coming back never runs it', async () => {
  const grace = { 'commands.agentResultGrace': 1000 };
  const { gw: a, keys: k } = await ownGateway({ 'gateway.id': 'grace-a', ...grace });
  const b = await startGateway({
    'redis.url': redis.url,
    'redis.keyPrefix': k.prefix,
    'redis.partitions': 4,
    'gateway.id': 'grace-b',
    'commands.sweepInterval': 200,
    ...grace,
  });
  try {
    await registerDevice(client, k, 'agent-died', []);
    const run = scripts(client);
    // One the agent's group read with nothing in the ledger yet (as while a read-only command
    // runs): received, so not `expired`; and one sent after that read, never read: `expired`.
    const stream = k.commands('agent-died');
    await client.xgroup('CREATE', stream, 'agent', '$', 'MKSTREAM');
    const read = await sendCommand(client, k, 'agent-died', { name: 'ping', ttlMs: 600 });
    await client.xreadgroup('GROUP', 'agent', 'agent-died', 'COUNT', 1, 'STREAMS', stream, '>');
    const unread = await sendCommand(client, k, 'agent-died', { name: 'ping', ttlMs: 600 });
    // One the agent started (running), one it only received (delivered); then it died.
    const sent = [];
    for (const mode of ['start', 'deliver'] as const) {
      const s = await sendCommand(client, k, 'agent-died', { name: 'reboot', ttlMs: 600 });
      const [code] = await run.beginCommand(
        k.commandLedger('agent-died', s.command.id),
        Date.now(),
        s.command.deadline,
        s.command.deadline + 60_000,
        'agent-died',
        mode,
      );
      expect(code).toBe(mode === 'start' ? 'started' : 'delivered');
      sent.push(s);
    }
    // Not before deadline + grace (only the unread one has ended, expired).
    await sleep(900);
    expect((await readResults(client, k)).map((r) => r.commandId)).not.toContain(read.command.id);
    for (const s of sent)
      expect((await readResults(client, k)).map((r) => r.commandId)).not.toContain(s.command.id);
    for (const s of sent) {
      const r = await waitForResult(client, k, 'agent-died', s.command.id, 20_000);
      expect(r).toMatchObject({ status: 'unknown', errorClass: 'AgentGone' });
      expect(r.deliveredAt).toBeGreaterThan(0);
      expect(r.finishedAt! - s.command.deadline).toBeGreaterThanOrEqual(1000);
    }
    const readResult = await waitForResult(client, k, 'agent-died', read.command.id, 20_000);
    expect(readResult).toMatchObject({ status: 'unknown', errorClass: 'AgentGone' });
    expect(readResult.finishedAt! - read.command.deadline).toBeGreaterThanOrEqual(1000);
    expect(await waitForResult(client, k, 'agent-died', unread.command.id, 20_000)).toMatchObject({
      status: 'expired',
      attempts: 0,
    });
    await sleep(600);
    const all = resultsByCommand(await readResults(client, k));
    for (const s of [...sent, read])
      expect(all.get(`agent-died/${s.command.id}`)?.map((r) => r.status)).toEqual(['unknown']);
    expect(all.get(`agent-died/${unread.command.id}`)?.map((r) => r.status)).toEqual(['expired']);
    // The agent comes back: its begin sees the command ended and it does not run.
    const [again] = await run.beginCommand(
      k.commandLedger('agent-died', sent[0]!.command.id),
      Date.now(),
      sent[0]!.command.deadline,
      sent[0]!.command.deadline + 60_000,
      'agent-died',
      'restart',
    );
    expect(again).toBe('done');
  } finally {
    await b.stop();
    await a.stop();
  }
});

/** Fallback poll so far away that only the doorbell can explain a delivery within the test. */
const NEVER_POLL = 600_000;

forEachTarget('command doorbell', (target) => {
  let bellGw: RunningGateway;
  let bellKeys: Keys;
  beforeAll(async () => {
    const prefix = randomPrefix();
    bellKeys = new Keys(prefix, 4);
    bellGw = await startGateway({
      ...target().config,
      'redis.keyPrefix': prefix,
      'redis.partitions': 4,
      'commands.pollInterval': NEVER_POLL,
      'commands.doorbellPollInterval': NEVER_POLL,
      'commands.sweepInterval': 200,
    });
  });
  afterAll(async () => {
    await bellGw?.stop();
  });

  it('delivers commands to a connected device without waiting for the poll', async () => {
    const t = target();
    const received: CommandMessage[] = [];
    await device('bell-1', true, received, bellGw.url);
    await waitFor(
      async () => (await t.client.sismember(bellKeys.mqttDevices(), 'bell-1')) === 1,
      10_000,
      'registered',
    );
    // Several in a row: after the first, only the doorbell reads this device's stream (no connect, no poll).
    for (let n = 0; n < 3; n++) {
      const sent = await sendCommand(t.client, bellKeys, 'bell-1', {
        name: 'ping',
        args: { n },
        ttlMs: 60_000,
      });
      const result = await waitForResult(t.client, bellKeys, 'bell-1', sent.command.id, 20_000);
      expect(result).toMatchObject({ status: 'succeeded', output: { echo: { n } } });
    }
    expect(received.map((c) => c.args.n)).toEqual([0, 1, 2]);
    expect(await t.client.xlen(bellKeys.commandDoorbell())).toBeGreaterThanOrEqual(3);
  });

  it('still delivers after the doorbell stream was deleted under a blocked reader', async () => {
    const t = target();
    await device('bell-2', true, [], bellGw.url);
    await waitFor(
      async () => (await t.client.sismember(bellKeys.mqttDevices(), 'bell-2')) === 1,
      10_000,
      'registered',
    );
    await t.client.del(bellKeys.commandDoorbell());
    const sent = await sendCommand(t.client, bellKeys, 'bell-2', { name: 'ping', ttlMs: 60_000 });
    const result = await waitForResult(t.client, bellKeys, 'bell-2', sent.command.id, 20_000);
    expect(result.status).toBe('succeeded');
  });
});

it('delivers by the fallback poll when a doorbell is lost or the doorbell is off', async () => {
  const prefix = randomPrefix();
  const k = new Keys(prefix, 4);
  const common = { 'redis.url': redis.url, 'redis.keyPrefix': prefix, 'redis.partitions': 4 };
  // Doorbell on, but the sender never rings it (as when its XADD failed): the slow backstop poll finds it.
  const polled = await startGateway({
    ...common,
    'gateway.id': 'gw-poll',
    'commands.pollInterval': 60_000,
    'commands.doorbellPollInterval': 300,
  });
  try {
    await device('lost-bell', true, [], polled.url);
    await waitFor(
      async () => (await client.sismember(k.mqttDevices(), 'lost-bell')) === 1,
      10_000,
      'registered',
    );
    // Queued by the script told not to ring: only a read without a doorbell can find it.
    const issuedAt = Date.now();
    const id = `silent-${issuedAt}`;
    const before = await client.xlen(k.commandDoorbell());
    await scripts(client).enqueueCommand(
      k.commands('lost-bell'),
      k.commandLedger('lost-bell', id),
      k.commandDoorbell(),
      issuedAt + 120_000,
      issuedAt,
      0,
      'lost-bell',
      ...encodeCommand({
        id,
        name: 'ping',
        args: {},
        issuedAt,
        deadline: issuedAt + 60_000,
        correlationId: id,
      }).fields,
    );
    expect(await client.xlen(k.commandDoorbell())).toBe(before);
    expect((await waitForResult(client, k, 'lost-bell', id, 20_000)).status).toBe('succeeded');
  } finally {
    await polled.stop();
  }
  // Doorbell off: rung, but nobody listens; the poll delivers.
  const deaf = await startGateway({
    ...common,
    'gateway.id': 'gw-deaf',
    'commands.doorbell': false,
    'commands.pollInterval': 300,
  });
  try {
    await device('deaf-bell', true, [], deaf.url);
    await waitFor(
      async () => (await client.sismember(k.mqttDevices(), 'deaf-bell')) === 1,
      10_000,
      'registered',
    );
    const sent = await sendCommand(client, k, 'deaf-bell', { name: 'ping', ttlMs: 60_000 });
    expect((await waitForResult(client, k, 'deaf-bell', sent.command.id, 20_000)).status).toBe('succeeded');
  } finally {
    await deaf.stop();
  }
});
