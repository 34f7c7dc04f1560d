/**
 * docs/guarantees.md §7: at producer.durability=replicated, the command path
 * acknowledges only what replicas have, as telemetry does. A sender is told a
 * command is queued only once a replica has it, and an entry is acked only once
 * a replica has its result: a master SIGKILLed right after cannot take a command
 * or a result with it (cluster-failover.test.ts runs the whole failover).
 *
 * Too few replicas: the servers of forEachTarget have none, so WAIT 1 counts 0.
 * Enough: a local primary with one replica.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '#shared/clock.js';
import { COMMAND_VERSION, resultFields } from '#shared/commands/codec.js';
import { type CommandEntry, Concluder } from '#shared/commands/conclude.js';
import { sendCommand } from '#shared/commands/send.js';
import { ReplicationError } from '#shared/errors.js';
import { Keys } from '#shared/keys.js';
import type { RedisClient } from '#shared/redis/connect.js';
import type { ReplicaWait } from '#shared/redis/durability.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startPrimaryWithReplica } from '../harness/redis-server.js';
import { forEachTarget } from '../harness/targets.js';

const ONE_REPLICA: ReplicaWait = { replicas: 1, timeoutMs: 200 };
const DEVICE = 'dev-dur';

/** A concluder at `durability`, and one entry of the device's command stream read by consumer c. */
async function concludeSetup(client: RedisClient, durability: ReplicaWait | undefined) {
  const keys = new Keys(randomPrefix(), 2);
  const stream = keys.commands(DEVICE);
  await client.xgroup('CREATE', stream, 'g', '0', 'MKSTREAM');
  const concluderAt = (d: ReplicaWait | undefined) =>
    new Concluder({ client, keys, clock: systemClock, group: 'g', resultsMaxLen: 0, durability: d });
  const fields = ['i', 'cmd-1', 'n', 'test.effect'];
  const entryId = (await client.xadd(stream, '*', ...fields)) as string;
  await client.xreadgroup('GROUP', 'g', 'c', 'COUNT', 1, 'STREAMS', stream, '>');
  const entry: CommandEntry = {
    deviceId: DEVICE,
    entryId,
    fields,
    commandId: 'cmd-1',
    expireAt: Date.now() + 60_000,
    ack: true,
  };
  const result = resultFields({
    commandId: 'cmd-1',
    deviceId: DEVICE,
    status: 'succeeded',
    finishedAt: Date.now(),
    attempts: 1,
    version: COMMAND_VERSION,
  });
  const pending = async () => Number(((await client.xpending(stream, 'g')) as [number])[0]);
  return { keys, concluder: concluderAt(durability), concluderAt, entry, result, pending };
}

forEachTarget('command durability, too few replicas', (target) => {
  it('a send is not acknowledged (ReplicationError), and sending the same id again never queues it twice', async () => {
    const { client } = target();
    const keys = new Keys(randomPrefix(), 2);
    const send = (durability?: ReplicaWait) =>
      sendCommand(client, keys, DEVICE, { name: 'test.effect', ttlMs: 60_000, id: 'cmd-s', durability });
    await expect(send(ONE_REPLICA)).rejects.toBeInstanceOf(ReplicationError);
    await expect(send(ONE_REPLICA)).rejects.toThrow(/reached 0 of 1 replicas/);
    // The master has it once (a replica that comes back gets it from there).
    const again = await send();
    expect(again.duplicate).toBe(true);
    expect(await client.xlen(keys.commands(DEVICE))).toBe(1);
  });

  it('a result short of its replicas is not reported as concluded; concluding again publishes it once', async () => {
    const { client, name } = target();
    const { keys, concluder, concluderAt, entry, result, pending } = await concludeSetup(client, ONE_REPLICA);
    await expect(concluder.conclude(entry, result)).rejects.toBeInstanceOf(ReplicationError);
    // Step by step (Cluster), the ack waits for the replicas: the entry stays pending and is read
    // again. In one script (standalone), the ack is replicated with the result or not at all.
    if (name === 'cluster') expect(await pending()).toBe(1);
    // Concluding again (a redelivery, replicas back): published once, then acked.
    const done = await concluderAt(undefined).conclude(entry, result);
    expect(done.resultAdded).toBe(false);
    expect(await pending()).toBe(0);
    expect(await client.xlen(keys.results())).toBe(1);
  });
});

describe('command durability, one replica', () => {
  let servers: { primary: RedisServer; replica: RedisServer } | undefined;
  const clients: RedisClient[] = [];
  beforeAll(async () => {
    servers = await startPrimaryWithReplica();
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await servers?.primary.destroy();
    await servers?.replica.destroy();
  });
  const connect = () => {
    const primary = servers!.primary.client();
    const replica = servers!.replica.client();
    clients.push(primary, replica);
    return { primary, replica };
  };

  it('a send resolves once the replica has the command', async () => {
    const { primary, replica } = connect();
    const keys = new Keys(randomPrefix(), 2);
    const sent = await sendCommand(primary, keys, DEVICE, {
      name: 'test.effect',
      ttlMs: 60_000,
      durability: ONE_REPLICA,
    });
    expect(sent.duplicate).toBe(false);
    // No waiting here: WAIT saw it on the replica before the send resolved.
    expect(await replica.xlen(keys.commands(DEVICE))).toBe(1);
    expect(await replica.hget(keys.commandLedger(DEVICE, sent.command.id), 'st')).toBe('queued');
  });

  it('a conclusion resolves once the replica has the result and the ack', async () => {
    const { primary, replica } = connect();
    const { keys, concluder, entry, result } = await concludeSetup(primary, ONE_REPLICA);
    const done = await concluder.conclude(entry, result);
    expect(done.resultAdded).toBe(true);
    expect(await replica.xlen(keys.results())).toBe(1);
    expect(Number(((await replica.xpending(keys.commands(DEVICE), 'g')) as [number])[0])).toBe(0);
  });
});
