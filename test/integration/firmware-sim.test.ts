/**
 * firmware-sim against a real redis-server and the real gateway in broker
 * mode (in process), with real MQTT: a mixed fleet streams and everything
 * acknowledged is stored once; each fault switch does what it says.
 *
 * Profiles run faster than life (GPS every 20 ms) so a few seconds give
 * thousands of readings; nothing here times speed.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCommand, waitForResult } from '#shared/commands/send.js';
import { Keys } from '#shared/keys.js';
import { type Fleet, type FleetOptions, startFleet } from '../../firmware-sim/fleet.js';
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
