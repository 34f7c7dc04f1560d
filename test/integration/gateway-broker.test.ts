/**
 * Broker mode against real MQTT clients (MQTT.js and mosquitto_pub/_sub) and
 * a real redis-server: the acknowledgement-after-append promise (docs/guarantees.md
 * §3), payload mapping, gateway-assigned sequence numbers, the
 * rejected stream, device authentication and the topic ACL, presence.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { hashPassword } from '../../gateway/auth.js';
import { anonymousAllowed, isLoopbackHost } from '../../gateway/broker.js';
import {
  gatewayConfig,
  type RunningGateway,
  startGateway,
  startPrefixedGateway,
} from '../harness/gateway.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { readAllTelemetry, readStream, waitFor } from '../harness/streams.js';

const run = promisify(execFile);

let redis: RedisServer;
let client: Redis;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  redis = await startRedis({ local: true });
  client = redis.client();
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

async function device(url: string, options: IClientOptions): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...options });
  cleanups.push(() => c.endAsync(true));
  return c;
}

async function rejected(keys: Keys): Promise<Array<Record<string, string>>> {
  const entries = await client.xrange(keys.rejected(), '-', '+');
  return entries.map(([, fields]) => {
    const o: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) o[fields[i]!] = fields[i + 1]!;
    return o;
  });
}

describe('gateway broker mode', () => {
  it('acknowledges a QoS 1 publish only once its entry is readable in Redis', async () => {
    const gw = await gateway();
    const dev = await device(gw.url, { clientId: 'dev-ack' });
    const stream = gw.keys.telemetryStreamFor('dev-ack');
    for (let seq = 1; seq <= 20; seq++) {
      await dev.publishAsync('devices/dev-ack/telemetry/temperature', JSON.stringify({ seq, c: 20 + seq }), {
        qos: 1,
      });
      // The PUBACK has arrived: the entry must already be there.
      expect(await client.xlen(stream)).toBe(seq);
    }
    const stored = await readStream(client, stream);
    expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(stored[0]).toMatchObject({ deviceId: 'dev-ack', type: 'temperature', payload: { c: 21 } });
  });

  it('holds acknowledgements while Redis is paused, then delivers everything (back-pressure, no loss)', async () => {
    const gw = await gateway({ 'producer.appendTimeout': 30_000 });
    const dev = await device(gw.url, { clientId: 'dev-slow' });
    await client.client('PAUSE', 1500, 'WRITE');
    let acked = 0;
    const sends = Array.from({ length: 50 }, (_, i) =>
      dev
        .publishAsync('devices/dev-slow/telemetry/load', JSON.stringify({ seq: i + 1, v: i }), { qos: 1 })
        .then(() => {
          acked++;
        }),
    );
    // While writes are paused, no publish may be acknowledged.
    await new Promise((r) => setTimeout(r, 500));
    const stream = gw.keys.telemetryStreamFor('dev-slow');
    expect(acked).toBe(0);
    await Promise.all(sends);
    expect(await client.xlen(stream)).toBe(50);
  });

  it('maps JSON objects, plain numbers and envelopes; assigns persistent sequence numbers when none is sent', async () => {
    const prefix = randomPrefix();
    const opts = {
      'redis.url': redis.url,
      'redis.keyPrefix': prefix,
      'redis.partitions': 4,
      'gateway.sequenceBlock': 5,
    };
    const keys = new Keys(prefix, 4);
    const first = await startGateway(opts);
    const a = await mqtt.connectAsync(first.url, { clientId: 'dev-map', reconnectPeriod: 0 });
    await a.publishAsync('devices/dev-map/telemetry/battery', '87.5', { qos: 1 });
    await a.publishAsync(
      'devices/dev-map/telemetry/gps',
      JSON.stringify({ lat: 1, lon: 2, time: 1_700_000_000_000 }),
      {
        qos: 1,
      },
    );
    await a.publishAsync(
      'devices/dev-map/telemetry/x',
      JSON.stringify({ deviceId: 'dev-map', type: 'humidity', seq: 100, time: 5, payload: { rh: 40 } }),
      { qos: 1 },
    );
    await a.endAsync();
    await first.stop();
    // A new gateway (as after a crash or restart) never reuses a number.
    const second = await startGateway(opts);
    cleanups.push(() => second.stop());
    const b = await device(second.url, { clientId: 'dev-map' });
    await b.publishAsync('devices/dev-map/telemetry/battery', '86', { qos: 1 });
    const stored = await readAllTelemetry(client, keys);
    const byType = Object.fromEntries(stored.map((e) => [`${e.type}:${JSON.stringify(e.payload)}`, e]));
    expect(byType['battery:87.5']).toMatchObject({ seq: 1 });
    expect(byType['gps:{"lat":1,"lon":2}']).toMatchObject({ seq: 2, time: 1_700_000_000_000 });
    // The topic's {type} level names the type; the envelope's own seq and time are kept.
    expect(byType['x:{"rh":40}']).toMatchObject({ seq: 100, time: 5 });
    const restarted = byType['battery:86'];
    expect(restarted?.seq).toBeGreaterThan(5);
    expect(new Set(stored.map((e) => e.seq)).size).toBe(stored.length);
  });

  it('sends garbage, oversized and unmapped publishes to the rejected stream and loses nothing else', async () => {
    const gw = await gateway({ 'gateway.maxPayloadBytes': 512 });
    const dev = await device(gw.url, { clientId: 'dev-bad' });
    const good = (seq: number) =>
      dev.publishAsync('devices/dev-bad/telemetry/t', JSON.stringify({ seq, v: seq }), { qos: 1 });
    await good(1);
    await dev.publishAsync('devices/dev-bad/telemetry/t', Buffer.from([0xff, 0x00, 0x7b]), { qos: 1 });
    await good(2);
    await dev.publishAsync('devices/dev-bad/telemetry/t', JSON.stringify({ seq: 3, pad: 'x'.repeat(2000) }), {
      qos: 1,
    });
    await good(4);
    await dev.publishAsync('devices/dev-bad/nowhere', '1', { qos: 1 });
    await dev.publishAsync('devices/dev-bad/telemetry/t', '[1,2]', { qos: 1 });
    await good(5);
    expect(dev.connected).toBe(true);
    const stored = await readAllTelemetry(client, gw.keys);
    expect(stored.map((e) => e.seq)).toEqual([1, 2, 4, 5]);
    const rej = await rejected(gw.keys);
    expect(rej.map((r) => r.r?.split(':')[0])).toEqual(['malformed', 'oversized', 'unmapped', 'malformed']);
    expect(rej[1]).toMatchObject({
      topic: 'devices/dev-bad/telemetry/t',
      d: 'dev-bad',
      n: expect.any(String),
    });
    expect(rej[2]).toMatchObject({ topic: 'devices/dev-bad/nowhere' });
  });

  it('authenticates devices against scrypt hashes and keeps each inside its own topics', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-cred-'));
    const file = join(dir, 'credentials.json');
    writeFileSync(
      file,
      JSON.stringify({ 'dev-a': await hashPassword('secret-a'), 'dev-b': await hashPassword('secret-b') }),
    );
    const gw = await gateway({ 'auth.credentialsFile': file });
    await expect(
      mqtt.connectAsync(gw.url, { clientId: 'x1', username: 'dev-a', password: 'wrong', reconnectPeriod: 0 }),
    ).rejects.toThrow();
    await expect(mqtt.connectAsync(gw.url, { clientId: 'x2', reconnectPeriod: 0 })).rejects.toThrow();

    const a = await device(gw.url, { clientId: 'a-1', username: 'dev-a', password: 'secret-a' });
    const b = await device(gw.url, { clientId: 'b-1', username: 'dev-b', password: 'secret-b' });
    const seenByB: string[] = [];
    b.on('message', (topic) => seenByB.push(topic));
    await b.subscribeAsync('devices/dev-b/#', { qos: 1 });
    // dev-a may not subscribe to dev-b's topics, nor to everything.
    const refusal = await a
      .subscribeAsync(['devices/dev-b/commands', 'devices/+/commands', '#'], { qos: 1 })
      .then(
        () => undefined,
        (err: { packet?: { granted?: number[] } }) => err,
      );
    // SUBACK return code 0x80 (failure) for each [MQTT-3.9.3].
    expect(refusal?.packet?.granted).toEqual([128, 128, 128]);
    // dev-a publishing as dev-b: refused, recorded, counted, and delivered to nobody.
    await a.publishAsync('devices/dev-b/telemetry/t', JSON.stringify({ seq: 1, forged: true }), { qos: 1 });
    await a.publishAsync('devices/dev-b/commands', '{"forged":true}', { qos: 1 });
    await a.publishAsync('devices/dev-a/telemetry/t', JSON.stringify({ seq: 1, v: 1 }), { qos: 1 });
    // mosquitto_pub as dev-b, with its password: accepted.
    await run('mosquitto_pub', [
      '-p',
      new URL(gw.url).port,
      '-i',
      'b-pub',
      '-u',
      'dev-b',
      '-P',
      'secret-b',
      '-q',
      '1',
      '-t',
      'devices/dev-b/telemetry/t',
      '-m',
      '{"seq":7,"v":7}',
    ]);
    const stored = await readAllTelemetry(client, gw.keys);
    expect(stored.map((e) => `${e.deviceId}:${e.seq}`).sort()).toEqual(['dev-a:1', 'dev-b:7']);
    const rej = await rejected(gw.keys);
    expect(rej.map((r) => r.r?.split(':')[0])).toEqual(['unauthorized', 'unauthorized']);
    expect(rej[0]).toMatchObject({ d: 'dev-a', topic: 'devices/dev-b/telemetry/t' });
    await waitFor(
      async () => seenByB.includes('devices/dev-b/telemetry/t'),
      5000,
      'b sees its own telemetry',
    );
    expect(seenByB).not.toContain('devices/dev-b/commands');
    const metrics = await gw.gateway.registry.getSingleMetricAsString('gateway_unauthorized_total');
    expect(metrics).toMatch(/gateway_unauthorized_total\S* 5/);
  });

  it('accepts mosquitto_pub and serves mosquitto_sub like any broker', async () => {
    const gw = await gateway();
    const port = new URL(gw.url).port;
    const broker = gw.gateway.broker!;
    const subscribed = new Promise<void>((resolve) => broker.aedes.once('subscribe', () => resolve()));
    // Anonymous devices are named by their user name (else their client id): two clients of dev-m.
    const sub = run('mosquitto_sub', [
      '-p',
      port,
      '-i',
      'm-sub',
      '-u',
      'dev-m',
      '-q',
      '1',
      '-t',
      'devices/dev-m/commands',
      '-C',
      '1',
      '-W',
      '20',
    ]);
    await subscribed;
    await broker.publish('devices/dev-m/commands', Buffer.from('hello'), 1);
    await run('mosquitto_pub', [
      '-p',
      port,
      '-i',
      'm-pub',
      '-u',
      'dev-m',
      '-q',
      '1',
      '-t',
      'devices/dev-m/telemetry/t',
      '-m',
      '42',
    ]);
    expect((await sub).stdout.trim()).toBe('hello');
    const stored = await readAllTelemetry(client, gw.keys);
    expect(stored.map((e) => e.payload)).toEqual([42]);
  });

  it('records connects, clean disconnects and last wills as presence events', async () => {
    const gw = await gateway();
    const a = await mqtt.connectAsync(gw.url, { clientId: 'dev-p1', reconnectPeriod: 0 });
    await a.endAsync();
    const b = await mqtt.connectAsync(gw.url, {
      clientId: 'dev-p2',
      reconnectPeriod: 0,
      will: { topic: 'devices/dev-p2/status', payload: Buffer.from('offline'), qos: 1, retain: false },
    });
    // An unclean end: the socket goes away without DISCONNECT.
    (b as unknown as { stream: { destroy(): void } }).stream.destroy();
    const events = await waitFor(async () => {
      const entries = await client.xrange(gw.keys.presence(), '-', '+');
      const list = entries.map(([, f]) => `${f[1]}:${f[3]}`);
      return list.length >= 5 && list;
    });
    expect(events).toEqual(
      expect.arrayContaining([
        'dev-p1:connected',
        'dev-p1:disconnected',
        'dev-p2:connected',
        'dev-p2:will',
        'dev-p2:lost',
      ]),
    );
    const seen = await client.hgetall(gw.keys.lastSeen());
    expect(Object.keys(seen).sort()).toEqual(['dev-p1', 'dev-p2']);
  });
});

describe('anonymous devices (they name themselves, so they could pose as any device)', () => {
  it('are accepted by default only while the broker binds a loopback address', async () => {
    const logger = silentLogger();
    const cfg = (o: Record<string, unknown>) => gatewayConfig({ 'auth.allowAnonymous': 'loopback', ...o });
    expect(['127.0.0.1', 'localhost', '::1', '[::1]', '127.0.0.53'].every(isLoopbackHost)).toBe(true);
    expect(['0.0.0.0', '::', '', '10.0.0.5', 'gateway'].some(isLoopbackHost)).toBe(false);
    expect(anonymousAllowed(cfg({ 'broker.host': '127.0.0.1' }), logger)).toBe(true);
    expect(() => anonymousAllowed(cfg({ 'broker.host': '0.0.0.0' }), logger)).toThrow(
      /auth\.credentialsFile.*hash-password.*auth\.allowAnonymous=true/,
    );
    // With a way for devices to prove who they are, it starts, and only those devices get in.
    expect(
      anonymousAllowed(cfg({ 'broker.host': '0.0.0.0', 'auth.credentialsFile': '/x.json' }), logger),
    ).toBe(false);
    // Asked for explicitly: anywhere. Refused explicitly: nowhere.
    expect(anonymousAllowed(cfg({ 'broker.host': '0.0.0.0', 'auth.allowAnonymous': 'true' }), logger)).toBe(
      true,
    );
    expect(anonymousAllowed(cfg({ 'broker.host': '127.0.0.1', 'auth.allowAnonymous': false }), logger)).toBe(
      false,
    );
  });

  it('the gateway refuses to start on 0.0.0.0 without credentials, saying what to set', async () => {
    const failed = await run(
      process.execPath,
      [
        '--import',
        'tsx',
        'gateway/cli.ts',
        '--broker-host',
        '0.0.0.0',
        '--broker-port',
        '0',
        '--redis-url',
        redis.url,
      ],
      { cwd: new URL('../../', import.meta.url).pathname, timeout: 60_000 },
    ).then(
      () => undefined,
      (err: { code?: number; stderr?: string }) => err,
    );
    expect(failed?.code).not.toBe(0);
    expect(failed?.stderr).toMatch(/auth\.credentialsFile/);
  });
});
