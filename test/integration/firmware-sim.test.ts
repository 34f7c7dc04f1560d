/**
 * firmware-sim against a real redis-server and the real gateway in broker
 * mode (in process), with real MQTT: a mixed fleet streams and everything
 * acknowledged is stored once; each fault switch does what it says.
 *
 * Profiles run faster than life (GPS every 20 ms) so a few seconds give
 * thousands of readings; nothing here times speed.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCommand, waitForResult } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import { type Fleet, type FleetOptions, startFleet } from '../../firmware-sim/fleet.js';
import { type AgentProcess, runProgram } from '../harness/agent-process.js';
import { type RunningGateway, startGateway } from '../harness/gateway.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { readAllTelemetry, waitFor } from '../harness/streams.js';

const PARTITIONS = 4;
let redis: RedisServer;
let client: Redis;
let gw: RunningGateway;
let prefix: string;
let keys: Keys;

beforeAll(async () => {
  redis = await startRedis({ local: true });
  client = redis.client();
  prefix = randomPrefix();
  keys = new Keys(prefix, PARTITIONS);
  gw = await startGateway({
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': PARTITIONS,
    'commands.pollInterval': 50,
    'commands.sweepInterval': 200,
  });
});
afterAll(async () => {
  await gw?.stop();
  client?.disconnect();
  await redis?.destroy();
});

let fleetNo = 0;
/** A fleet with its own device ids (same key prefix, so the gateway serves it). */
function fleet(options: FleetOptions): Promise<Fleet> {
  return startFleet({
    'redis.url': redis.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': PARTITIONS,
    'mqtt.url': gw.url,
    'fleet.idPrefix': `f${fleetNo++}`,
    'fleet.rampUp': 200,
    'profile.drone.gpsInterval': 20,
    'profile.drone.batteryInterval': 200,
    'mqtt.reconnectBase': 50,
    'mqtt.reconnectMax': 500,
    'commands.claimIdle': 60_000,
    ...options,
  });
}

/** Runs until every device has acked at least `perDevice` readings on average. */
async function runUntil(f: Fleet, acked: number): Promise<void> {
  await waitFor(async () => f.stats().acked >= acked, 20_000, `${acked} acknowledged readings`);
}

describe('a mixed fleet', () => {
  it('streams, and every acknowledged reading is stored exactly once', async () => {
    const f = await fleet({ 'fleet.agents': 6, 'fleet.mqtt': 6, 'fleet.commandAgents': 2 });
    expect(f.devices.filter((d) => d.kind === 'agent')).toHaveLength(6);
    expect(f.devices.filter((d) => d.kind === 'mqtt')).toHaveLength(6);
    await waitFor(async () => f.stats().connected === 12, 10_000, 'all devices connected');
    await runUntil(f, 2000);
    const live = f.stats();
    expect(live.byKind.agent.acked).toBeGreaterThan(0);
    expect(live.byKind.mqtt.acked).toBeGreaterThan(0);
    await f.stop();
    const after = f.stats();
    expect(after.connected).toBe(0);
    // stop() leaves nothing running: no Redis connection of the fleet, no MQTT client at the broker.
    // (The server notices a closed socket a moment later: wait for it rather than race it.)
    await waitFor(
      async () => !((await client.client('LIST')) as string).includes('name=firmware-sim'),
      5000,
      "the fleet's Redis connections gone",
    );
    await waitFor(async () => gw.gateway.broker!.aedes.connectedClients === 0, 5000, 'MQTT clients gone');
    const report = await f.audit();
    expect(report.acked).toBeGreaterThan(2000);
    expect(report.lost).toBe(0);
    expect(report.duplicates).toBe(0);
    // A clean stop flushes: everything sent was acknowledged.
    expect(report.unacked).toBe(0);
    expect(report.stored).toBe(report.acked);
    // The drone profile: GPS, battery and delivery events from both kinds.
    const entries = (await readAllTelemetry(client, keys)).filter((e) => e.deviceId.startsWith('f0-'));
    const types = new Set(entries.map((e) => `${e.deviceId.split('-')[1]}:${e.type}`));
    for (const t of ['a:gps', 'a:battery', 'm:gps', 'm:battery']) expect(types).toContain(t);
    const gps = entries.find((e) => e.type === 'gps')!.payload as Record<string, unknown>;
    expect(Object.keys(gps)).toEqual(expect.arrayContaining(['lat', 'lon', 'alt', 'spd', 'hdg']));
  });
});

/** Entries of a stream as field maps. */
async function streamMaps(stream: string): Promise<Map<string, string>[]> {
  const entries = await client.xrange(stream, '-', '+');
  return entries.map(([, fields]) => {
    const m = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) m.set(fields[i]!, fields[i + 1]!);
    return m;
  });
}

describe('fault switches', () => {
  it('duplicate publishes are refused by the idempotent appends: nothing stored twice', async () => {
    const gwDuplicatesBefore = gw.gateway.producer.totals.duplicates;
    const f = await fleet({ 'fleet.agents': 4, 'fleet.mqtt': 4, 'faults.duplicate': 0.3 });
    await runUntil(f, 1500);
    await f.stop();
    const s = f.stats();
    expect(s.faults.duplicates).toBeGreaterThan(50);
    // Agents: refused by Redis through the shared producer; MQTT: through the gateway's producer.
    expect(s.duplicatesRefused).toBeGreaterThan(0);
    expect(gw.gateway.producer.totals.duplicates - gwDuplicatesBefore).toBeGreaterThan(0);
    expect(s.duplicatesRefused + gw.gateway.producer.totals.duplicates - gwDuplicatesBefore).toBe(
      s.faults.duplicates,
    );
    const report = await f.audit();
    expect(report.duplicates).toBe(0);
    expect(report.lost).toBe(0);
    expect(report.stored).toBe(report.acked);
  });

  it('out-of-order publishes are all stored, once each', async () => {
    const f = await fleet({ 'fleet.agents': 4, 'fleet.mqtt': 4, 'faults.outOfOrder': 0.3 });
    await runUntil(f, 1500);
    await f.stop();
    expect(f.stats().faults.outOfOrder).toBeGreaterThan(50);
    const report = await f.audit();
    expect(report.storedOutOfOrder).toBeGreaterThan(0);
    expect(report.lost).toBe(0);
    expect(report.duplicates).toBe(0);
    expect(report.unacked).toBe(0);
    expect(report.stored).toBe(report.acked);
  });

  it('malformed payloads land in the rejected stream with their reason, and good data still arrives', async () => {
    const f = await fleet({ 'fleet.agents': 0, 'fleet.mqtt': 4, 'faults.malformed': 0.1 });
    const idPrefix = f.config['fleet.idPrefix'];
    await runUntil(f, 800);
    await f.stop();
    const malformed = f.stats().faults.malformed;
    expect(malformed).toBeGreaterThan(10);
    const rejected = (await streamMaps(keys.rejected())).filter((m) =>
      m.get('d')?.startsWith(`${idPrefix}-`),
    );
    expect(rejected).toHaveLength(malformed);
    for (const r of rejected) expect(r.get('r')).toMatch(/^malformed: /);
    const report = await f.audit();
    expect(report.lost).toBe(0);
    expect(report.stored).toBe(report.acked);
  });

  it('clock skew: skewed devices stamp their own (wrong) time, and it is kept as sent', async () => {
    const skew = 3_600_000;
    const f = await fleet({
      'fleet.agents': 2,
      'fleet.mqtt': 2,
      'faults.clockSkew': 1,
      'faults.clockSkewMs': skew,
    });
    const idPrefix = f.config['fleet.idPrefix'];
    await runUntil(f, 400);
    await f.stop();
    const entries = (await readAllTelemetry(client, keys)).filter((e) =>
      e.deviceId.startsWith(`${idPrefix}-`),
    );
    const offsets = new Map<string, number>();
    for (const e of entries) {
      const off = e.time - Number(e.id.split('-')[0]);
      // Within a few seconds of +-1 h: the device's time, not the gateway's or Redis's.
      expect(Math.abs(Math.abs(off) - skew)).toBeLessThan(5000);
      offsets.set(e.deviceId, Math.sign(off));
    }
    expect(offsets.size).toBe(4);
    expect([...offsets.values()].filter((s) => s > 0)).toHaveLength(2);
  });

  it('slow command handlers: the result comes, after the stall', async () => {
    const stall = 600;
    const f = await fleet({
      'fleet.agents': 1,
      'fleet.mqtt': 1,
      'fleet.commandAgents': 1,
      'faults.slowCommands': 1,
      'faults.slowCommandMs': stall,
    });
    try {
      await waitFor(async () => f.stats().connected === 2, 10_000, 'devices connected');
      for (const d of f.devices) {
        const sent = await sendCommand(client, keys, d.id, { name: 'ping', ttlMs: 20_000 });
        const result = await waitForResult(client, keys, d.id, sent.command.id, 15_000);
        expect(result.status).toBe('succeeded');
        expect(result.finishedAt! - sent.command.issuedAt).toBeGreaterThanOrEqual(stall);
      }
      expect(f.stats().faults.slowCommands).toBe(2);
    } finally {
      await f.stop();
    }
  });

  it('a crashing MQTT device reconnects with its persistent session and gets the command queued meanwhile', async () => {
    const f = await fleet({ 'fleet.agents': 0, 'fleet.mqtt': 2 });
    const [victim] = f.devices;
    try {
      await waitFor(async () => f.stats().connected === 2, 10_000, 'devices connected');
      const crashedAt = Date.now();
      await f.crash(victim!.id, 1500);
      expect(f.stats().byKind.mqtt.connected).toBe(1);
      const sent = await sendCommand(client, keys, victim!.id, { name: 'ping', ttlMs: 20_000 });
      const result = await waitForResult(client, keys, victim!.id, sent.command.id, 15_000);
      expect(result.status).toBe('succeeded');
      expect(result.finishedAt!).toBeGreaterThanOrEqual(crashedAt + 1500);
      // The broker saw it die without a DISCONNECT (will or lost), then come back.
      const presence = (await streamMaps(keys.presence())).filter((m) => m.get('d') === victim!.id);
      const events = presence.map((m) => m.get('e'));
      expect(events.some((e) => e === 'will' || e === 'lost')).toBe(true);
      expect(events.filter((e) => e === 'connected').length).toBeGreaterThanOrEqual(2);
    } finally {
      await f.stop();
    }
    const report = await f.audit();
    expect(f.stats().byKind.mqtt.crashes).toBe(1);
    expect(report.lost).toBe(0);
    expect(report.duplicates).toBe(0);
  });

  it('a crashing agent device restarts its command worker, which runs the command queued meanwhile', async () => {
    const f = await fleet({ 'fleet.agents': 1, 'fleet.mqtt': 0, 'fleet.commandAgents': 1 });
    const [victim] = f.devices;
    try {
      await waitFor(async () => f.stats().acked > 20, 10_000, 'agent streaming');
      const crashed = f.crash(victim!.id, 1000);
      const sent = await sendCommand(client, keys, victim!.id, { name: 'ping', ttlMs: 20_000 });
      await crashed;
      const result = await waitForResult(client, keys, victim!.id, sent.command.id, 15_000);
      expect(result.status).toBe('succeeded');
    } finally {
      await f.stop();
    }
    const report = await f.audit();
    expect(report.lost).toBe(0);
    expect(report.duplicates).toBe(0);
  });

  it('disconnect storms: devices reconnect with backoff and nothing acknowledged is lost', async () => {
    const f = await fleet({ 'fleet.agents': 4, 'fleet.mqtt': 8 });
    await waitFor(async () => f.stats().connected === 12, 10_000, 'all devices connected');
    await runUntil(f, 500);
    const hit = f.storm(1);
    expect(hit).toHaveLength(8);
    await waitFor(async () => f.stats().byKind.mqtt.disconnects === 8, 5000, 'storm');
    const ackedAtStorm = f.stats().acked;
    await waitFor(async () => f.stats().connected === 12, 15_000, 'all devices back');
    await runUntil(f, ackedAtStorm + 500);
    await f.stop();
    const report = await f.audit();
    expect(report.lost).toBe(0);
    expect(report.duplicates).toBe(0);
    expect(report.stored).toBe(report.acked);
  });

  it('scheduled faults run at their rate: crashes per minute', async () => {
    const f = await fleet({
      'fleet.agents': 3,
      'fleet.mqtt': 3,
      'faults.crashes': 120,
      'faults.crashDowntime': 200,
    });
    await waitFor(async () => f.stats().faults.crashes >= 3, 10_000, 'three scheduled crashes');
    await f.stop();
    const report = await f.audit();
    expect(report.lost).toBe(0);
    expect(report.duplicates).toBe(0);
  });
});

function exited(p: AgentProcess): Promise<number | null> {
  if (p.child.exitCode !== null) return Promise.resolve(p.child.exitCode);
  return new Promise((resolve) => p.child.once('exit', (code) => resolve(code)));
}

describe('the CLI (npm run sim)', () => {
  it('--help lists the options from the schema', async () => {
    const p = runProgram('sim', ['--help']);
    expect(await exited(p)).toBe(0);
    const out = p.output();
    for (const flag of [
      '--fleet-agents',
      '--fleet-mqtt',
      '--fleet-profile',
      '--faults-duplicate',
      '--mqtt-url',
    ])
      expect(out).toContain(flag);
  });

  it('runs a fleet for --fleet-duration, shows progress, and writes a read-back summary', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-cli-'));
    const file = join(dir, 'summary.json');
    try {
      const p = runProgram('sim', [
        ...['--redis-url', redis.url, '--redis-key-prefix', prefix, '--redis-partitions', String(PARTITIONS)],
        ...['--mqtt-url', gw.url, '--fleet-id-prefix', 'cli', '--fleet-agents', '3', '--fleet-mqtt', '3'],
        ...['--fleet-duration', '2s', '--fleet-progress-interval', '500ms', '--fleet-summary-file', file],
        ...['--faults-duplicate', '0.1', '--log-level', 'warn'],
      ]);
      const code = await exited(p);
      expect(code, p.output()).toBe(0);
      expect(p.output()).toMatch(/connected +6 \(agent 3, mqtt 3\) +\d+ msg\/s/);
      expect(p.output()).toContain('summary after');
      const summary = JSON.parse(readFileSync(file, 'utf8')) as {
        sent: number;
        acked: number;
        faults: { duplicates: number };
        duplicatesRefused: number;
        audit: { lost: number; duplicates: number; stored: number };
      };
      expect(summary.acked).toBeGreaterThan(0);
      expect(summary.acked).toBe(summary.sent);
      expect(summary.audit.lost).toBe(0);
      expect(summary.audit.duplicates).toBe(0);
      expect(summary.duplicatesRefused).toBe(summary.faults.duplicates);
      expect(summary.audit.stored).toBe(summary.acked - summary.faults.duplicates);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
