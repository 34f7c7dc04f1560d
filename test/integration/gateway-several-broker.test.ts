/**
 * Several gateways in broker mode (docs/gateway.md, "Several gateways"): two
 * gateway processes against one Redis, devices spread over them with a list
 * of broker URLs. One gateway is SIGKILLed: its devices that reconnect go to
 * the other, which delivers their commands; the one that does not come back
 * is not left online forever: once the gone gateway's lease expires, its
 * session ends with a `lost` presence event saying why.
 */
import type { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sendCommand, waitForResult } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import type { AgentProcess } from '../harness/agent-process.js';
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

/** The last presence event of each device, with its gateway and payload. */
async function lastPresence(keys: Keys): Promise<Map<string, { e: string; g: string; p?: string }>> {
  const last = new Map<string, { e: string; g: string; p?: string }>();
  for (const [, flat] of await client.xrange(keys.presence(), '-', '+')) {
    const f: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) f[flat[i]!] = flat[i + 1]!;
    last.set(f.d!, { e: f.e!, g: f.g!, p: f.p });
  }
  return last;
}

it('a killed gateway: its devices move to the other, commands follow them, the one left behind ends lost', async () => {
  const prefix = randomPrefix();
  const keys = new Keys(prefix, 4);
  const ports = [await freePort(), await freePort()];
  const flags = (i: number) => ({
    'gateway.mode': 'broker',
    'gateway.id': `gw-${i}`,
    'gateway.leaseTtl': '1500ms',
    'broker.port': ports[i]!,
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'log.level': 'info',
  });
  const gateways: AgentProcess[] = [
    await startGatewayProcessReady(flags(0)),
    await startGatewayProcessReady(flags(1)),
  ];
  const servers = (first: number) => [first, 1 - first].map((i) => ({ host: '127.0.0.1', port: ports[i]! }));
  const devices: MqttClient[] = [];
  try {
    // mover: on gw-0, fails over to gw-1; stayer: on gw-1 all along; left: on gw-0, never reconnects.
    const mover = await commandDevice(`mqtt://127.0.0.1:${ports[0]}`, 'mover', {
      mqtt: { servers: servers(0), reconnectPeriod: 200 },
    });
    const stayer = await commandDevice(`mqtt://127.0.0.1:${ports[1]}`, 'stayer', {
      mqtt: { servers: servers(1), reconnectPeriod: 200 },
    });
    const left = await commandDevice(`mqtt://127.0.0.1:${ports[0]}`, 'left');
    devices.push(mover, stayer, left);
    await waitFor(
      async () => Object.keys(await client.hgetall(keys.sessions())).length === 3,
      10_000,
      'three sessions recorded',
    );
    expect(await client.hgetall(keys.sessions())).toEqual({ mover: 'gw-0', stayer: 'gw-1', left: 'gw-0' });

    await gateways[0]!.kill('SIGKILL');
    await waitFor(
      async () => (await client.hget(keys.sessions(), 'mover')) === 'gw-1',
      10_000,
      'mover on gw-1',
    );
    // Its commands now go out through gw-1.
    const sent = await sendCommand(client, keys, 'mover', { name: 'reboot', args: { n: 1 }, ttlMs: 20_000 });
    const result = await waitForResult(client, keys, 'mover', sent.command.id, 15_000);
    expect(result.status).toBe('succeeded');

    // gw-0's lease expires; gw-1 ends the session gw-0 could not.
    await waitFor(async () => (await lastPresence(keys)).get('left')?.e === 'lost', 15_000, 'left ends lost');
    const presence = await lastPresence(keys);
    expect(presence.get('left')).toMatchObject({ e: 'lost', g: 'gw-1' });
    expect(presence.get('left')?.p).toContain('gw-0');
    expect(presence.get('mover')).toMatchObject({ e: 'connected', g: 'gw-1' });
    expect(presence.get('stayer')).toMatchObject({ e: 'connected', g: 'gw-1' });
    expect(await client.hgetall(keys.sessions())).toEqual({ mover: 'gw-1', stayer: 'gw-1' });
    expect(Object.keys(await client.hgetall(keys.gateways()))).toEqual(['gw-1']);
  } finally {
    await Promise.all(devices.map((d) => d.endAsync(true)));
    for (const g of gateways) await g.kill('SIGTERM');
  }
}, 90_000);
