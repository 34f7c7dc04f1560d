/**
 * Health that never lies (docs/operator.md "Health and metrics";
 * docs/guarantees.md §9): every way a process drops, refuses or force-trims
 * data turns its /healthz to 503 with that reason's code, provoked here for
 * real against redis-server (paused, stopped, or with a wrong-typed key),
 * and the process is healthy again once the state clears or, for a loss,
 * once health.lossWindow has passed since the last one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '#shared/config/load.js';
import { flagName } from '#shared/config/schema.js';
import { encodeEnvelope, envelopeFields } from '#shared/envelope.js';
import type { HealthReason } from '#shared/health.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { Agent } from '../../device/agent.js';
import { ENV_PREFIX as AGENT_ENV, agentSchema } from '../../device/config.js';
import { projectionFactories } from '../../gateway/projection/factory.js';
import { retentionFactories } from '../../gateway/retention/factory.js';
import type { ServiceFactory } from '../../gateway/services.js';
import { runScript } from '../harness/agent-process.js';
import { startGateway } from '../harness/gateway.js';
import { startMosquitto } from '../harness/mosquitto.js';
import { freePort } from '../harness/ports.js';
import { randomPrefix } from '../harness/prefix.js';
import { startLocalRedis, useLocalRedis } from '../harness/redis-server.js';
import { waitFor } from '../harness/streams.js';

const local = useLocalRedis();

/** Short, so that a test sees a loss clear; the default is 60 s. */
const WINDOW = 1500;

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Healthz {
  status: number;
  healthy: boolean;
  reasons: HealthReason[];
  codes: string[];
}

async function healthz(port: number): Promise<Healthz> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  const body = (await res.json()) as { healthy: boolean; reasons: HealthReason[] };
  return { status: res.status, ...body, codes: body.reasons.map((r) => r.code) };
}

/** Waits until /healthz answers 503 with `code` among its reasons (and `match` holds for it); returns that reason. */
async function unhealthyWith(
  port: number,
  code: string,
  match: (r: HealthReason) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<HealthReason> {
  const h = await waitFor(
    async () => {
      const r = await healthz(port);
      return r.status === 503 && r.reasons.some((x) => x.code === code && match(x)) ? r : undefined;
    },
    timeoutMs,
    `503 with ${code}`,
  );
  expect(h.healthy).toBe(false);
  return h.reasons.find((r) => r.code === code)!;
}

async function healthyAgain(port: number, timeoutMs = 15_000): Promise<void> {
  await waitFor(async () => (await healthz(port)).status === 200, timeoutMs, '200 again');
  expect(await healthz(port)).toMatchObject({ status: 200, healthy: true, reasons: [] });
}

async function gateway(extra: Record<string, unknown> = {}, services: ServiceFactory[] = []) {
  const port = await freePort();
  const prefix = randomPrefix();
  const partitions = typeof extra['redis.partitions'] === 'number' ? extra['redis.partitions'] : 4;
  const gw = await startGateway(
    {
      'redis.url': local.server.url,
      'redis.keyPrefix': prefix,
      'redis.partitions': partitions,
      'metrics.port': port,
      'health.lossWindow': WINDOW,
      ...extra,
    },
    { services },
  );
  cleanups.push(() => gw.stop());
  expect(await healthz(port)).toMatchObject({ status: 200, reasons: [] });
  return { ...gw, port, keys: new Keys(prefix, partitions) };
}

const entry = (deviceId: string, seq: number) =>
  envelopeFields(
    encodeEnvelope({ deviceId, seq, time: 1_700_000_000_000 + seq, type: 't', payload: { seq } }),
  );

describe('gateway', () => {
  it('presence-dropped: presence events beyond gateway.maxPendingEvents while Redis takes no writes', async () => {
    // A longer window than the pause, to see the loss still reported once Redis is back.
    const gw = await gateway({ 'gateway.maxPendingEvents': 1, 'health.lossWindow': 4000 });
    await local.client.call('CLIENT', 'PAUSE', '1000', 'WRITE');
    const devices = await Promise.all(
      [1, 2, 3, 4].map((i) => mqtt.connectAsync(gw.url, { clientId: `pres-${i}`, reconnectPeriod: 0 })),
    );
    cleanups.push(() => Promise.all(devices.map((d) => d.endAsync(true))));
    const reason = await unhealthyWith(gw.port, 'presence-dropped');
    expect(reason.count).toBe(3);
    expect(reason.message).toMatch(/^3 presence events dropped/);
    // Still reported after the pause ended and the one held event was written, until the window passes.
    await waitFor(async () => gw.gateway.records.pending === 0, 10_000, 'held event written');
    expect((await healthz(gw.port)).codes).toContain('presence-dropped');
    await healthyAgain(gw.port);
  });

  it('publishes-refused: an oversized publish goes to the rejected stream and /healthz says so', async () => {
    const gw = await gateway({ 'gateway.maxPayloadBytes': 64 });
    const device = await mqtt.connectAsync(gw.url, { clientId: 'big-1', reconnectPeriod: 0 });
    cleanups.push(() => device.endAsync(true));
    await device.publishAsync('devices/big-1/telemetry/t', 'x'.repeat(200), { qos: 1 });
    const h = await healthz(gw.port);
    expect(h.status).toBe(503);
    expect(h.codes).toEqual(['publishes-refused']);
    expect(h.reasons[0]).toMatchObject({ count: 1 });
    expect(await local.client.xlen(gw.keys.rejected())).toBe(1);
    await healthyAgain(gw.port);
  });

  it('publishes-refused: a reply on a result topic that is no command result, rejected by command intake', async () => {
    const gw = await gateway();
    const device = await mqtt.connectAsync(gw.url, { clientId: 'res-1', reconnectPeriod: 0 });
    cleanups.push(() => device.endAsync(true));
    await device.publishAsync('devices/res-1/results', 'not a result', { qos: 1 });
    const h = await healthz(gw.port);
    expect(h.codes).toEqual(['publishes-refused']);
    expect(h.reasons[0]?.message).toContain('malformed: devices/res-1/results');
    await healthyAgain(gw.port);
  });

  it('publishes-refused in bridge mode: a malformed publish taken from a real mosquitto', async () => {
    const mosquitto = await startMosquitto();
    cleanups.push(() => mosquitto.stop());
    const gw = await gateway({
      'gateway.mode': 'bridge',
      'bridge.url': mosquitto.url,
      'bridge.group': randomPrefix(),
      'bridge.connections': 1,
    });
    const device = await mqtt.connectAsync(mosquitto.url, { clientId: 'bad-1', reconnectPeriod: 0 });
    cleanups.push(() => device.endAsync(true));
    await device.publishAsync('devices/bad-1/telemetry/t', '{"seq": 1, "v":', { qos: 1 });
    const reason = await unhealthyWith(gw.port, 'publishes-refused');
    expect(reason.count).toBe(1);
    await waitFor(async () => (await local.client.xlen(gw.keys.rejected())) === 1, 10_000, 'rejected entry');
    await healthyAgain(gw.port);
  });

  it('sequence-forgotten: out-of-order sequence numbers beyond producer.maxGaps', async () => {
    const gw = await gateway({ 'producer.maxGaps': 1 });
    const device = await mqtt.connectAsync(gw.url, { clientId: 'gap-1', reconnectPeriod: 0 });
    cleanups.push(() => device.endAsync(true));
    // 1, then 3 and 5: two ranges above the mark, one more than the bound, so the gap at 2 is closed.
    for (const seq of [1, 3, 5])
      await device.publishAsync('devices/gap-1/telemetry/t', JSON.stringify({ seq, v: seq }), { qos: 1 });
    const h = await healthz(gw.port);
    expect(h.status).toBe(503);
    expect(h.codes).toEqual(['sequence-forgotten']);
    expect(h.reasons[0]).toMatchObject({ count: 1 });
    // Which is why it is reported: seq 2, late, is refused now.
    await device.publishAsync('devices/gap-1/telemetry/t', JSON.stringify({ seq: 2, v: 2 }), { qos: 1 });
    const stored = await local.client.xrange(gw.keys.telemetryStreamFor('gap-1'), '-', '+');
    expect(stored).toHaveLength(3);
    await healthyAgain(gw.port);
  });

  it('back-pressure: while the producer buffer is full the gateway reads nothing more, and says so', async () => {
    const gw = await gateway({ 'producer.maxBufferedEntries': 10, 'producer.batchMaxEntries': 5 });
    const device = await mqtt.connectAsync(gw.url, { clientId: 'bp-1', reconnectPeriod: 0 });
    cleanups.push(() => device.endAsync(true));
    await local.client.call('CLIENT', 'PAUSE', '2500', 'WRITE');
    for (let seq = 1; seq <= 60; seq++)
      device.publish('devices/bp-1/telemetry/t', JSON.stringify({ seq, v: seq }), { qos: 0 });
    const reason = await unhealthyWith(gw.port, 'back-pressure');
    expect(reason.message).toMatch(/producer buffer is full/);
    // A state: it clears as soon as Redis takes the backlog (no window).
    await healthyAgain(gw.port, 20_000);
  });

  it('projection-lag: the projection group more than projection.maxLag entries behind', async () => {
    const gw = await gateway(
      // Slow on purpose: after its first round it reads its one partition again only a minute later.
      { 'redis.partitions': 1, 'projection.interval': 60_000, 'projection.maxLag': 10 },
      projectionFactories({ 'projection.enabled': true, 'projection.thread': true }),
    );
    const stream = gw.keys.telemetryStream(0);
    // Its first round has read (the consumer exists once it has): what comes now waits a minute.
    await waitFor(
      async () => ((await local.client.xinfo('CONSUMERS', stream, 'projection')) as unknown[]).length > 0,
      10_000,
      'first round',
    );
    for (let seq = 1; seq <= 50; seq++) await local.client.xadd(stream, '*', ...entry('lag-1', seq));
    // Over the bound. Not exactly 50: the consumer appears when the first round's read starts, and a
    // read still blocked then takes the first entries added (seen under CI load).
    const reason = await unhealthyWith(gw.port, 'projection-lag', (r) => (r.count ?? 0) > 10);
    expect(reason.message).toMatch(/\d+ entries behind, over projection.maxLag \(10\)/);
    expect((await healthz(gw.port)).codes).toEqual(['projection-lag']);
    // Another consumer of the group folds them in (here: reads and acknowledges): behind by 0, healthy.
    await local.client.xreadgroup('GROUP', 'projection', 'helper', 'COUNT', 100, 'STREAMS', stream, '>');
    const ids = (await local.client.xrange(stream, '-', '+')).map(([id]) => id);
    await local.client.xack(stream, 'projection', ...ids);
    await healthyAgain(gw.port);
  });

  it('projection-dropped: an entry the projection cannot decode', async () => {
    const gw = await gateway(
      { 'projection.interval': 100 },
      projectionFactories({ 'projection.enabled': true, 'projection.thread': true }),
    );
    await local.client.xadd(gw.keys.telemetryStream(0), '*', 'd', 'bad-one', 's', 'x');
    const reason = await unhealthyWith(gw.port, 'projection-dropped');
    expect(reason.count).toBe(1);
    await healthyAgain(gw.port);
  });

  it('projection-failing: rounds that fail (its consumer group was destroyed) until they succeed again', async () => {
    const gw = await gateway(
      { 'redis.partitions': 1, 'projection.interval': 100, 'projection.thread': false },
      projectionFactories({ 'projection.enabled': true, 'projection.thread': false }),
    );
    const stream = gw.keys.telemetryStream(0);
    await local.client.xgroup('DESTROY', stream, 'projection');
    const reason = await unhealthyWith(gw.port, 'projection-failing');
    expect(reason.message).toMatch(/NOGROUP/);
    await local.client.xgroup('CREATE', stream, 'projection', '0');
    await healthyAgain(gw.port);
  });

  it('retention-failing: a stream retention cannot trim (a key of the wrong type), until it can', async () => {
    const gw = await gateway(
      { 'redis.partitions': 1, 'retention.interval': 200 },
      retentionFactories({ 'retention.enabled': true }),
    );
    const stream = gw.keys.telemetryStream(0);
    await local.client.set(stream, 'not a stream');
    const reason = await unhealthyWith(gw.port, 'retention-failing');
    expect(reason.message).toContain(stream);
    await local.client.del(stream);
    await healthyAgain(gw.port);
  });
});

describe('retention process (gateway/retention/cli.ts)', () => {
  it('retention-forced-trim: the hard memory cap trims entries a group has not read', async () => {
    const prefix = randomPrefix();
    const keys = new Keys(prefix, 1);
    const stream = keys.telemetryStream(0);
    const pipe = local.client.pipeline();
    for (let seq = 1; seq <= 3000; seq++) pipe.xadd(stream, '*', ...entry('cap-1', seq));
    await pipe.exec();
    await local.client.xgroup('CREATE', stream, 'workers', '0');
    const memory = Number(await local.client.memory('USAGE', stream, 'SAMPLES', 0));
    const port = await freePort();
    const options: Record<string, string | number> = {
      'redis.url': local.server.url,
      'redis.keyPrefix': prefix,
      'redis.partitions': 1,
      'metrics.port': port,
      'health.lossWindow': WINDOW,
      'retention.interval': 300,
      'retention.telemetry.maxBytes': Math.floor(memory / 2),
      'projection.enabled': 'false',
    };
    const p = runScript(
      'gateway/retention/cli.ts',
      Object.entries(options).flatMap(([k, v]) => [`--${flagName(k)}`, String(v)]),
    );
    cleanups.push(() => p.kill('SIGKILL'));
    await p.waitForLog((l) => l.msg === 'started', 30_000);
    const reason = await unhealthyWith(port, 'retention-forced-trim');
    expect(reason.count).toBeGreaterThan(0);
    expect(reason.message).toContain('group workers');
    expect(await local.client.xlen(stream)).toBeLessThan(3000);
    expect(reason.count).toBe(3000 - (await local.client.xlen(stream)));
    // Under the cap now: later passes lose nothing, and the window passes.
    await healthyAgain(port);
  });
});

describe('device agent', () => {
  async function agent(redisUrl: string, extra: Record<string, unknown>) {
    const dir = mkdtempSync(join(tmpdir(), 'health-agent-'));
    const port = await freePort();
    const config = loadConfig(agentSchema, AGENT_ENV, {
      overrides: {
        'device.id': 'health-1',
        'device.dataDir': dir,
        'redis.url': redisUrl,
        'redis.keyPrefix': randomPrefix(),
        'redis.connectTimeout': 500,
        sensors: 'constant',
        'sensors.constant.interval': 1,
        'sensors.constant.payloadBytes': 200,
        'producer.appendTimeout': 1000,
        'agent.shutdownTimeout': 500,
        'metrics.port': port,
        'health.lossWindow': WINDOW,
        'log.level': 'silent',
        ...extra,
      },
    });
    const a = new Agent(config, { logger: silentLogger() });
    await a.start();
    cleanups.push(async () => {
      await a.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    return { agent: a, port };
  }

  it('readings-dropped: no journal, Redis down, the producer buffer full', async () => {
    const redis = await startLocalRedis();
    cleanups.push(() => redis.destroy());
    await redis.stop();
    const { port } = await agent(redis.url, {
      'journal.enabled': false,
      'producer.maxBufferedEntries': 20,
      'producer.batchMaxEntries': 10,
    });
    const reason = await unhealthyWith(port, 'readings-dropped');
    expect(reason.count).toBeGreaterThan(0);
    await redis.start();
    await healthyAgain(port, 20_000);
  });

  it('journal-dropped: Redis down and the journal budget full', async () => {
    const redis = await startLocalRedis();
    cleanups.push(() => redis.destroy());
    await redis.stop();
    const { port } = await agent(redis.url, {
      'journal.maxBytes': '16KiB',
      'journal.segmentBytes': '4KiB',
      'journal.flushInterval': 5,
    });
    const reason = await unhealthyWith(port, 'journal-dropped');
    expect(reason.count).toBeGreaterThan(0);
    expect((await healthz(port)).codes).toEqual(['journal-dropped']);
    await redis.start();
    await healthyAgain(port, 30_000);
  });
});
