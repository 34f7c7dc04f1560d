/**
 * The dashboard against a real redis-server, the real gateway (broker mode,
 * in process, with its dashboard on a free port) and a real firmware-sim
 * fleet (agent and MQTT devices):
 *
 * - the JSON API: fleet, metrics history (bounded ring), pending and
 *   dead-letter counts, results, and command sending with input validation;
 * - the page in a real browser (Debian's chromium driven by playwright-core):
 *   it shows every device, loads nothing from anywhere but the gateway, and a
 *   command sent from its form reaches its terminal result on the page.
 */
import type { Redis } from 'ioredis';
import type { BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, envelopeFields } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { type Fleet, startFleet } from '../../firmware-sim/fleet.js';
import { type DeviceView, FleetReader, type FleetView } from '../../gateway/dashboard/fleet.js';
import type { Sample } from '../../gateway/dashboard/history.js';
import { projectionFactories } from '../../gateway/projection/factory.js';
import { type Browser, launchBrowser, sendFromForm } from '../harness/browser.js';
import { type RunningGateway, startGateway } from '../harness/gateway.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { waitFor } from '../harness/streams.js';

const PARTITIONS = 4;
const HISTORY = 12;

let redis: RedisServer;
let client: Redis;
let gw: RunningGateway;
let fleet: Fleet;
let keys: Keys;
let base: string;

beforeAll(async () => {
  redis = await startRedis({ local: true });
  client = redis.client();
  const prefix = randomPrefix();
  keys = new Keys(prefix, PARTITIONS);
  // With the latest-state projection, as `npm run gateway` and the demo run it.
  gw = await startGateway(
    {
      'redis.url': redis.url,
      'redis.keyPrefix': prefix,
      'redis.partitions': PARTITIONS,
      'commands.pollInterval': 50,
      'dashboard.port': 0,
      'dashboard.sampleInterval': 100,
      'dashboard.historySize': HISTORY,
    },
    { services: projectionFactories({ 'projection.enabled': true }) },
  );
  base = gw.gateway.dashboard!.url.replace(/\/$/, '');
  fleet = await startFleet({
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': PARTITIONS,
    'mqtt.url': gw.url,
    'fleet.idPrefix': 'dash',
    'fleet.agents': 2,
    'fleet.mqtt': 2,
    'fleet.commandAgents': 2,
    'fleet.rampUp': 100,
    'profile.drone.gpsInterval': 100,
  });
});
afterAll(async () => {
  await fleet?.stop();
  await gw?.stop();
  client?.disconnect();
  await redis?.destroy();
});

async function get<T>(path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${base}${path}`);
  return { status: res.status, body: (await res.json()) as T };
}

async function post(
  body: unknown,
  contentType = 'application/json',
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/api/commands`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

type ErrorBody = { error: { code: string; message: string; field?: string } };

describe('JSON API', () => {
  it('lists every device of the fleet with its kind, latest readings and last-seen time', async () => {
    const ids = fleet.devices.map((d) => d.id).sort();
    const view = await waitFor(
      async () => {
        const { body } = await get<FleetView>('/api/fleet');
        const ready = body.devices.filter(
          (d) => d.source === 'projection' && d.readings.gps && d.readings.battery && d.lastSeen !== null,
        );
        return ready.length === ids.length ? body : undefined;
      },
      20_000,
      'every device with gps and battery readings',
    );
    expect(view.total).toBe(ids.length);
    expect(view.devices.map((d) => d.id)).toEqual(ids);
    const byId = new Map(view.devices.map((d): [string, DeviceView] => [d.id, d]));
    for (const d of fleet.devices) expect(byId.get(d.id)?.kind).toBe(d.kind);
    const now = Date.now();
    for (const d of view.devices) expect(now - (d.lastSeen ?? 0)).toBeLessThan(60_000);

    // Bounded: limit and filter.
    const page = await get<FleetView>('/api/fleet?limit=1&offset=1');
    expect(page.body.devices.map((d) => d.id)).toEqual([ids[1]]);
    const mqttOnly = await get<FleetView>('/api/fleet?q=-m-');
    expect(mqttOnly.body.devices.every((d) => d.kind === 'mqtt')).toBe(true);
    expect(mqttOnly.body.matching).toBe(2);
    const tooMany = await get<ErrorBody>('/api/fleet?limit=100000');
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.message).toMatch(/"limit" must be an integer/);
  });

  it('without projection state, takes the newest readings from the partitions, by sequence number', async () => {
    const bare = new Keys(randomPrefix(), 2);
    const append = (seq: number, type: string, payload: Record<string, unknown>) =>
      client.xadd(
        bare.telemetryStreamFor('loner-1'),
        '*',
        ...envelopeFields(encodeEnvelope({ deviceId: 'loner-1', seq, time: 1000 + seq, type, payload })),
      );
    await append(5, 'temperature', { c: 21 });
    await append(3, 'temperature', { c: 18 }); // late and older: not the latest
    await append(4, 'humidity', { rh: 40 });
    const view = await new FleetReader(client, bare, () => Date.now()).read({ offset: 0, limit: 10 });
    expect(view.devices).toHaveLength(1);
    expect(view.devices[0]).toMatchObject({
      id: 'loner-1',
      kind: 'agent',
      seq: 5,
      source: 'tail',
      readings: { temperature: { seq: 5, payload: { c: 21 } }, humidity: { seq: 4, payload: { rh: 40 } } },
    });
  });

  it('samples throughput into a bounded history', async () => {
    const samples = await waitFor(
      async () => {
        const { body } = await get<{ capacity: number; samples: Sample[] }>('/api/metrics-history');
        return body.samples.length === HISTORY && body.samples.some((s) => s.ingestedPerS > 0)
          ? body.samples
          : undefined;
      },
      20_000,
      'a full history with traffic',
    );
    // Oldest first, and never more than the ring holds.
    for (let i = 1; i < samples.length; i++) expect(samples[i]!.t).toBeGreaterThanOrEqual(samples[i - 1]!.t);
    const last = samples.at(-1)!;
    expect(last.ingested).toBeGreaterThan(0);
    expect((await get<{ samples: Sample[] }>('/api/metrics-history?last=3')).body.samples).toHaveLength(3);
    expect((await get<{ samples: Sample[] }>('/api/metrics-history?last=300')).body.samples).toHaveLength(
      HISTORY,
    );
    expect((await get<ErrorBody>('/api/metrics-history?last=0')).status).toBe(400);
  });

  it('counts pending entries of consumer groups and dead letters', async () => {
    const before = (await get<{ samples: Sample[] }>('/api/metrics-history?last=1')).body.samples[0]!;
    // A consumer group that reads three telemetry entries and acknowledges none: they are pending.
    const stream = keys.telemetryStreamFor(fleet.devices[0]!.id);
    await waitFor(async () => (await client.xlen(stream)) >= 3, 10_000, 'entries in a partition');
    await client.xgroup('CREATE', stream, 'dash-test', '0');
    await client.xreadgroup('GROUP', 'dash-test', 'c1', 'COUNT', 3, 'STREAMS', stream, '>');
    await client.xadd(keys.deadLetters(), '*', 'd', 'dash-a-0', 'i', 'dead-1', 'm', 'test');
    const after = await waitFor(
      async () => {
        const s = (await get<{ samples: Sample[] }>('/api/metrics-history?last=1')).body.samples[0];
        return s && s.deadLetters === before.deadLetters + 1 && s.pending >= before.pending + 3
          ? s
          : undefined;
      },
      10_000,
      'pending and dead letters in a sample',
    );
    // The new group has not read what arrived since: it lags.
    expect(after.lag === null || after.lag >= 0).toBe(true);
    await client.xgroup('DESTROY', stream, 'dash-test');
  });

  it('sends a command and reports its ledger and result', async () => {
    const target = fleet.devices.find((d) => d.kind === 'mqtt')!.id;
    const sent = await post({ deviceId: target, name: 'ping', ttlMs: 20_000 });
    expect(sent.status).toBe(202);
    const commandId = String(sent.body.commandId);
    const view = await waitFor(
      async () => {
        const { body } = await get<{ status: string; result?: { status: string } }>(
          `/api/commands/${target}/${commandId}`,
        );
        return body.result ? body : undefined;
      },
      20_000,
      'the terminal result',
    );
    expect(view.result?.status).toBe('succeeded');
    const { body } = await get<{ results: Array<{ commandId: string; status: string }> }>(
      '/api/results?limit=10',
    );
    expect(body.results.find((r) => r.commandId === commandId)?.status).toBe('succeeded');
    expect((await get<ErrorBody>('/api/results?limit=201')).status).toBe(400);
    expect((await get<ErrorBody>(`/api/commands/${target}/no-such-command`)).status).toBe(404);
  });

  it('refuses bad command requests with clear errors', async () => {
    const device = fleet.devices[0]!.id;
    const cases: Array<[unknown, string, number, RegExp]> = [
      [{ deviceId: device, name: 'ping' }, 'text/plain', 415, /Content-Type: application\/json/],
      ['{"deviceId":', 'application/json', 400, /not valid JSON/],
      [{ deviceId: device, name: 'ping', extra: 1 }, 'application/json', 400, /unknown field "extra"/],
      [{ deviceId: 'no such device', name: 'ping' }, 'application/json', 400, /deviceId must match/],
      [{ deviceId: 'ghost-7', name: 'ping' }, 'application/json', 404, /no device "ghost-7"/],
      [{ deviceId: device, name: 'ping', args: [] }, 'application/json', 400, /args must be a JSON object/],
      [{ deviceId: device, name: 'ping', ttlMs: 1 }, 'application/json', 400, /ttlMs must be an integer/],
      [{ deviceId: device, name: 'ping', args: { x: 'a'.repeat(9000) } }, 'application/json', 400, /args/],
      [
        { deviceId: device, name: 'ping', args: { x: 'a'.repeat(20_000) } },
        'application/json',
        413,
        /exceeds 16384 bytes/,
      ],
    ];
    for (const [body, type, status, message] of cases) {
      const res = await post(body, type);
      expect({ status: res.status, message: (res.body as ErrorBody).error?.message }).toEqual({
        status,
        message: expect.stringMatching(message),
      });
    }
    const wrongMethod = await fetch(`${base}/api/fleet`, { method: 'DELETE' });
    expect(wrongMethod.status).toBe(405);
  });

  it('serves the page with a policy that allows only its own origin', async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'self'/);
    const html = await res.text();
    expect(html).not.toMatch(/https?:\/\//);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});

describe('in a real browser', () => {
  let browser: Browser;
  let context: BrowserContext;

  beforeAll(async () => {
    browser = await launchBrowser();
    context = browser.context;
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('shows the fleet and carries a command from the form to its result', async () => {
    const page = context.pages()[0] ?? (await context.newPage());
    const requests: string[] = [];
    const problems: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    await page.goto(`${base}/`);

    // Every device of the fleet is listed, with readings.
    for (const d of fleet.devices) {
      const row = page.locator(`#fleet tr[data-device="${d.id}"]`);
      await row.waitFor({ timeout: 20_000 });
      await expect.poll(() => row.locator('td.readings').textContent(), { timeout: 20_000 }).toMatch(/gps/);
      expect(await row.locator('.tag').textContent()).toBe(d.kind);
    }
    expect(await page.locator('#c-devices').textContent()).toBe(String(fleet.devices.length));
    expect(problems).toEqual([]);
    await expect
      .poll(() => page.locator('#chart-rate polyline').count(), { timeout: 10_000 })
      .toBeGreaterThan(0);
    await expect
      .poll(() => page.locator('#map circle').count(), { timeout: 10_000 })
      .toBe(fleet.devices.length);
    expect(Number(await page.locator('#c-dead').textContent())).toBeGreaterThanOrEqual(0);

    // A command from the form, to each kind of device: its terminal result shows in the outcome and the list.
    for (const kind of ['mqtt', 'agent'] as const) {
      const target = fleet.devices.find((d) => d.kind === kind)!.id;
      const commandId = await sendFromForm(
        page,
        target,
        'set-interval',
        '{"sensor":"battery","interval":750}',
      );
      // The outcome line names this command's device (the one before it named another).
      await expect
        .poll(() => page.locator('#cmd-outcome').textContent(), { timeout: 20_000 })
        .toMatch(new RegExp(`set-interval on ${target}: succeeded`));
      const row = page.locator(`#results tr[data-command="${commandId}"]`);
      await row.waitFor({ timeout: 10_000 });
      expect(await row.textContent()).toMatch(new RegExp(`${target}set-intervalsucceeded`));
    }

    // Bad input gets a clear message on the page, from the browser's check or from the server's.
    await page.fill('#cmd-args', '{not json');
    await page.click('#cmd-send');
    await expect.poll(() => page.locator('#cmd-outcome').textContent()).toMatch(/args are not valid JSON/);
    await page.fill('#cmd-args', '{}');
    await page.fill('#cmd-device', 'ghost-9');
    await page.click('#cmd-send');
    await expect
      .poll(() => page.locator('#cmd-outcome').textContent())
      .toMatch(/not sent: no device "ghost-9"/);

    // Nothing was loaded from anywhere but the gateway.
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.filter((u) => !u.startsWith(`${base}/`))).toEqual([]);
    // The refused command above logs a failed request (404) in the console; nothing else may.
    expect(problems.filter((p) => !/404/.test(p))).toEqual([]);
    if (process.env.DASHBOARD_SCREENSHOT)
      await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });
  });
});
