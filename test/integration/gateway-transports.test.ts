/**
 * Broker mode's other transports, with real MQTT.js clients: MQTT over TLS
 * (server verified by the device), client-certificate login (the certificate's
 * CN names the device, and the topic ACL follows it), and MQTT over WebSocket.
 */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import type { Keys } from '#shared/keys.js';
import { type RunningGateway, startPrefixedGateway } from '../harness/gateway.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { readStream, waitFor } from '../harness/streams.js';
import { makeCertificates, makeClientCertificate, type TestCertificates } from '../harness/tls.js';

let redis: RedisServer;
let client: Redis;
let certs: TestCertificates;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  redis = await startRedis({ local: true });
  client = redis.client();
  certs = makeCertificates();
});
afterAll(async () => {
  client.disconnect();
  await redis.destroy();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function gateway(extra: Record<string, unknown> = {}): Promise<RunningGateway & { keys: Keys }> {
  const gw = await startPrefixedGateway(redis.url, extra);
  cleanups.push(() => gw.stop());
  return gw;
}

async function connect(url: string, options: mqtt.IClientOptions): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  cleanups.push(() => c.endAsync(true));
  return c;
}

const stored = async (keys: Keys, deviceId: string, n: number) =>
  waitFor(
    async () => {
      const entries = (await readStream(client, keys.telemetryStreamFor(deviceId))).filter(
        (e) => e.deviceId === deviceId,
      );
      return entries.length >= n ? entries : undefined;
    },
    10_000,
    `${n} entries of ${deviceId}`,
  );

it('accepts QoS 1 telemetry over TLS from a device that verifies the gateway', async () => {
  const gw = await gateway({
    'broker.tlsPort': 0,
    'broker.tlsCertFile': certs.cert,
    'broker.tlsKeyFile': certs.key,
  });
  const port = gw.ports?.tls;
  expect(port).toBeGreaterThan(0);
  const dev = await connect(`mqtts://127.0.0.1:${port}`, { clientId: 'dev-tls', ca: readFileSync(certs.ca) });
  await dev.publishAsync('devices/dev-tls/telemetry/temperature', JSON.stringify({ c: 20.5, seq: 1 }), {
    qos: 1,
  });
  const [entry] = await stored(gw.keys, 'dev-tls', 1);
  expect(entry).toMatchObject({ deviceId: 'dev-tls', seq: 1, type: 'temperature', payload: { c: 20.5 } });
});

it('names a device by its client certificate and holds it to its own topics; no certificate, no connection', async () => {
  const gw = await gateway({
    'broker.tlsPort': 0,
    'broker.tlsCertFile': certs.cert,
    'broker.tlsKeyFile': certs.key,
    'broker.tlsCaFile': certs.ca,
    'auth.allowAnonymous': false,
  });
  const url = `mqtts://127.0.0.1:${gw.ports?.tls}`;
  const mine = makeClientCertificate(certs, 'dev-cert');
  const dev = await connect(url, {
    clientId: 'whatever-id',
    ca: readFileSync(certs.ca),
    cert: readFileSync(mine.cert),
    key: readFileSync(mine.key),
  });
  await dev.publishAsync('devices/dev-cert/telemetry/t', '1', { qos: 1 });
  await dev.publishAsync('devices/someone-else/telemetry/t', JSON.stringify({ v: 2, seq: 9 }), { qos: 1 });
  const [entry] = await stored(gw.keys, 'dev-cert', 1);
  expect(entry).toMatchObject({ deviceId: 'dev-cert', payload: 1 });
  const rejected = await client.xrange(gw.keys.rejected(), '-', '+');
  expect(rejected.map(([, f]) => f[f.indexOf('r') + 1])).toEqual([expect.stringMatching(/^unauthorized/)]);
  expect(await client.xlen(gw.keys.telemetryStreamFor('someone-else'))).toBe(0);

  await expect(connect(url, { clientId: 'no-cert', ca: readFileSync(certs.ca) })).rejects.toThrow();
});

it('accepts QoS 1 telemetry over WebSocket', async () => {
  const gw = await gateway({ 'broker.wsPort': 0 });
  const dev = await connect(`ws://127.0.0.1:${gw.ports?.ws}`, { clientId: 'dev-ws' });
  await dev.publishAsync('devices/dev-ws/telemetry/battery', JSON.stringify({ pct: 80, seq: 1 }), { qos: 1 });
  await dev.publishAsync('devices/dev-ws/telemetry/battery', JSON.stringify({ pct: 79, seq: 2 }), { qos: 1 });
  const entries = await stored(gw.keys, 'dev-ws', 2);
  expect(entries.map((e) => [e.seq, e.payload])).toEqual([
    [1, { pct: 80 }],
    [2, { pct: 79 }],
  ]);
});
