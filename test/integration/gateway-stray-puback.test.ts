/**
 * A PUBACK for a message id the broker never sent (a device that rebooted
 * acknowledging a previous life's delivery; found by firmware-sim's crash
 * fault) is ignored: the gateway keeps running and keeps storing telemetry
 * (docs/guarantees.md §5). Before the fix, aedes's `ack` event without a
 * packet threw inside a promise chain: an unhandled rejection, which ends a
 * Node process (and fails this test run).
 */
import { once } from 'node:events';
import { createConnection } from 'node:net';
import type { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { generate } from 'mqtt-packet';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import { type RunningGateway, startGateway } from '../harness/gateway.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { readAllTelemetry, waitFor } from '../harness/streams.js';

let redis: RedisServer;
let client: Redis;
let gw: RunningGateway;
let keys: Keys;

beforeAll(async () => {
  redis = await startRedis({ local: true });
  client = redis.client();
  const prefix = randomPrefix();
  keys = new Keys(prefix, 2);
  gw = await startGateway({ 'redis.url': redis.url, 'redis.keyPrefix': prefix, 'redis.partitions': 2 });
});
afterAll(async () => {
  await gw?.stop();
  client?.disconnect();
  await redis?.destroy();
});

it('ignores a PUBACK of an unknown message id and goes on storing telemetry', async () => {
  const port = Number(new URL(gw.url).port);
  const socket = createConnection({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  socket.write(
    generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: 'stray-1',
      clean: false,
      keepalive: 30,
    }),
  );
  await once(socket, 'data'); // CONNACK
  for (const messageId of [1, 42, 65535]) socket.write(generate({ cmd: 'puback', messageId }));
  await new Promise((r) => setTimeout(r, 200));
  socket.destroy();

  const device = await mqtt.connectAsync(gw.url, { clientId: 'stray-2', reconnectPeriod: 0 });
  await device.publishAsync('devices/stray-2/telemetry/t', JSON.stringify({ seq: 1, c: 20 }), { qos: 1 });
  await device.endAsync();
  const stored = await waitFor(async () => {
    const entries = (await readAllTelemetry(client, keys)).filter((e) => e.deviceId === 'stray-2');
    return entries.length === 1 ? entries : undefined;
  });
  expect(stored[0]!.seq).toBe(1);
});
