/**
 * shared/commands/conclude.ts, the one way the agent and the gateway end a
 * command, on a standalone server (one script call) and a real Cluster (step
 * by step) alike: the first result fixed in the ledger wins and is the only
 * one published, once; a `failed` result is dead-lettered once; the entry is
 * acknowledged only when asked (the sweep never acks); results are capped.
 */
import { expect, it } from 'vitest';
import { systemClock } from '#shared/clock.js';
import { COMMAND_VERSION, decodeResult, resultFields } from '#shared/commands/codec.js';
import { type CommandEntry, Concluder } from '#shared/commands/conclude.js';
import { Keys } from '#shared/keys.js';
import { randomPrefix } from '../harness/prefix.js';
import { forEachTarget } from '../harness/targets.js';

forEachTarget('conclude', (target) => {
  const setup = async (resultsMaxLen = 0) => {
    const keys = new Keys(randomPrefix(), 2);
    const { client } = target();
    const deviceId = 'dev-c';
    const stream = keys.commands(deviceId);
    await client.xgroup('CREATE', stream, 'g', '0', 'MKSTREAM');
    const concluder = new Concluder({ client, keys, clock: systemClock, group: 'g', resultsMaxLen });
    /** Queues and reads one entry (pending for consumer c), as a consumer would before ending it. */
    const entry = async (commandId: string, ack = true): Promise<CommandEntry> => {
      const fields = ['i', commandId, 'n', 'test.fail'];
      const entryId = (await client.xadd(stream, '*', ...fields)) as string;
      await client.xreadgroup('GROUP', 'g', 'c', 'COUNT', 1, 'STREAMS', stream, '>');
      return { deviceId, entryId, fields, commandId, expireAt: Date.now() + 60_000, ack };
    };
    const result = (commandId: string, status: 'succeeded' | 'failed', message: string = status) =>
      resultFields({
        commandId,
        deviceId,
        status,
        finishedAt: Date.now(),
        attempts: 1,
        message,
        errorClass: status === 'failed' ? 'Boom' : undefined,
        version: COMMAND_VERSION,
      });
    const pending = async () => Number(((await client.xpending(stream, 'g')) as [number])[0]);
    return { keys, client, concluder, entry, result, pending };
  };

  it('the first result wins, is published once, a failed one dead-lettered once, then the entry is acked', async () => {
    const { keys, client, concluder, entry, result, pending } = await setup();
    const e = await entry('cmd-1');
    const first = await concluder.conclude(e, result('cmd-1', 'failed', 'first'));
    expect(first).toMatchObject({ fixed: true, status: 'failed', resultAdded: true, deadLetterAdded: true });
    expect(await pending()).toBe(0);
    // A second consumer (or a redelivery) with another result: the stored one wins, nothing twice.
    const again = await concluder.conclude(e, result('cmd-1', 'succeeded', 'second'));
    expect(again).toMatchObject({
      fixed: false,
      status: 'failed',
      resultAdded: false,
      deadLetterAdded: false,
    });
    expect(decodeResult(again.result).message).toBe('first');
    const results = await client.xrange(keys.results(), '-', '+');
    expect(results.map(([, f]) => decodeResult(f).message)).toEqual(['first']);
    const dead = await client.xrange(keys.deadLetters(), '-', '+');
    expect(dead).toHaveLength(1);
    // Republishing the stored copy publishes nothing new.
    const re = await concluder.republish(e, again.result);
    expect(re).toMatchObject({ resultAdded: false, deadLetterAdded: false });
    expect(await client.xlen(keys.results())).toBe(1);
  });

  it('without ack (the sweep) it publishes and leaves the entry pending; results are capped at resultsMaxLen', async () => {
    const { keys, client, concluder, entry, result, pending } = await setup();
    const e = await entry('cmd-2', false);
    const done = await concluder.conclude(e, result('cmd-2', 'succeeded'));
    expect(done).toMatchObject({ fixed: true, resultAdded: true, deadLetterAdded: false });
    expect(await pending()).toBe(1);
    expect(await client.xlen(keys.deadLetters())).toBe(0);

    const capped = await setup(1);
    for (let i = 0; i < 250; i++)
      await capped.concluder.conclude(await capped.entry(`cap-${i}`), capped.result(`cap-${i}`, 'succeeded'));
    // MAXLEN ~ trims whole stream nodes (100 entries each by default): far below 250, never exact.
    expect(await capped.client.xlen(capped.keys.results())).toBeLessThan(250);
  });
});
