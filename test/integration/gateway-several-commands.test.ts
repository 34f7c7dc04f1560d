/**
 * docs/guarantees.md §2 and §4 with several gateways: two gateway processes
 * (broker mode) sweep command deadlines and trim command streams hard at
 * once, while commands go to MQTT devices on both, to one that never
 * answers, to one that has gone offline, and to an agent. Every command ends in
 * exactly one result, and no unread or pending command is trimmed away.
 */
import type { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sendCommand } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import type { AgentProcess } from '../harness/agent-process.js';
import { readResults, resultsByCommand, startCommandAgent, tempDataDir } from '../harness/commands.js';
import { startGatewayProcessReady } from '../harness/gateway.js';
import { commandDevice } from '../harness/mqtt-device.js';
import { freePort } from '../harness/ports.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { waitFor } from '../harness/streams.js';

let redis: RedisServer;
let client: Redis;
beforeAll(async () => {
  redis = await startRedis({ local: true });
  client = redis.client();
});
afterAll(async () => {
  client.disconnect();
  await redis.destroy();
});

it('two gateways sweeping and trimming at once: every command ends in exactly one result', async () => {
  const prefix = randomPrefix();
  const keys = new Keys(prefix, 4);
  const ports = [await freePort(), await freePort()];
  const flags = (i: number) => ({
    'gateway.mode': 'broker',
    'gateway.id': `gwc-${i}`,
    'broker.port': ports[i]!,
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'commands.sweepInterval': '200ms',
    'commands.agentResultGrace': '1s',
    'retention.interval': '300ms',
    'retention.commands.maxLen': 3,
    'log.level': 'info',
  });
  const gateways: AgentProcess[] = [
    await startGatewayProcessReady(flags(0)),
    await startGatewayProcessReady(flags(1)),
  ];
  const devices: MqttClient[] = [];
  let agent: AgentProcess | undefined;
  try {
    const answering = ['dev-0', 'dev-1', 'dev-2', 'dev-3'];
    for (const [i, id] of answering.entries())
      devices.push(await commandDevice(`mqtt://127.0.0.1:${ports[i % 2]}`, id));
    devices.push(await commandDevice(`mqtt://127.0.0.1:${ports[1]}`, 'dev-silent', { answer: false }));
    // Known to the fleet (it connected once), offline while its commands come and go.
    await (await commandDevice(`mqtt://127.0.0.1:${ports[0]}`, 'dev-offline')).endAsync();
    agent = startCommandAgent(redis.url, keys, 'agent-0', tempDataDir());
    // The agent reads once it registered (after making its group): on a loaded machine its start
    // alone can outlast the commands' 3 s ttl, and they would end `expired`, rightly, but not tested here.
    await waitFor(
      async () => (await client.sismember(keys.fleet(), 'agent-0')) === 1,
      30_000,
      'agent started',
    );
    const targets = [...answering, 'dev-silent', 'dev-offline', 'agent-0'];
    const sent: string[] = [];
    for (let n = 0; n < 140; n++) {
      const id = targets[n % targets.length]!;
      const name = id === 'agent-0' ? 'test.effect' : 'reboot';
      const s = await sendCommand(client, keys, id, { name, args: { n }, ttlMs: 3000 });
      sent.push(`${id}/${s.command.id}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const byCommand = await waitFor(
      async () => {
        const m = resultsByCommand(await readResults(client, keys));
        return sent.every((k) => m.has(k)) && m;
      },
      30_000,
      'a result for every command',
    ).catch(async (err: Error) => {
      const m = resultsByCommand(await readResults(client, keys));
      const missing = sent.filter((k) => !m.has(k)).map((k) => k.split('/')[0]);
      throw new Error(`${err.message}; without one: ${JSON.stringify(missing)}`);
    });
    // Each settles once, whichever gateway swept or delivered it.
    for (const k of sent) expect(byCommand.get(k)?.length, k).toBe(1);
    const statuses = (id: string) =>
      new Set(sent.filter((k) => k.startsWith(`${id}/`)).map((k) => byCommand.get(k)![0]!.status));
    for (const id of [...answering, 'agent-0']) expect(statuses(id)).toEqual(new Set(['succeeded']));
    expect(statuses('dev-silent')).toEqual(new Set(['unknown']));
    expect(statuses('dev-offline')).toEqual(new Set(['expired']));
    // Retention trimmed the command streams meanwhile, down to its bound once everything was done.
    await waitFor(async () => (await client.xlen(keys.commands('dev-0'))) <= 3, 10_000, 'dev-0 trimmed');
  } finally {
    await Promise.all(devices.map((d) => d.endAsync(true)));
    await agent?.kill('SIGTERM');
    for (const g of gateways) await g.kill('SIGTERM');
  }
}, 90_000);
