/**
 * Vendor mappings end to end: recorded-style Tasmota, Zigbee2MQTT and Shelly
 * Gen2 payloads published with the real `mosquitto_pub` binary, through a real
 * mosquitto (bridge mode, the gateway subscribed to the mappings' filters in
 * its shared subscription) and through the gateway's own broker (aedes, the
 * mapped device id checked against the authenticated device). Every message
 * becomes entries in the telemetry streams or a rejected entry naming the
 * mapping and the reason; nothing is dropped without a trace.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { Keys } from '#shared/keys.js';
import { startFleet } from '../../firmware-sim/fleet.js';
import { startPrefixedGateway } from '../harness/gateway.js';
import { useMosquitto } from '../harness/mosquitto.js';
import { randomPrefix } from '../harness/prefix.js';
import { useLocalRedis } from '../harness/redis-server.js';
import { readAllTelemetry, type StoredEntry, waitFor } from '../harness/streams.js';

const run = promisify(execFile);

const redis = useLocalRedis();
const mosquitto = useMosquitto();

/** One QoS 1 publish with the mosquitto_pub binary; `user` logs in as that device. */
async function pub(port: number, topic: string, message: string, user?: string): Promise<void> {
  const args = ['-p', String(port), '-q', '1', '-t', topic, '-m', message];
  if (user) args.push('-u', user, '-i', `${user}-${randomPrefix()}`);
  await run('mosquitto_pub', args);
}

async function rejected(keys: Keys): Promise<Array<Record<string, string>>> {
  const entries = await redis.client.xrange(keys.rejected(), '-', '+');
  return entries.map(([, fields]) => {
    const o: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) o[fields[i]!] = fields[i + 1]!;
    return o;
  });
}

const by = (entries: StoredEntry[], deviceId: string, type: string) =>
  entries.filter((e) => e.deviceId === deviceId && e.type === type).map((e) => e.payload);

// Recorded-style payloads, shaped as the firmware sends them.
const TASMOTA_ENERGY = JSON.stringify({
  Time: '2024-05-01T12:00:00',
  ENERGY: {
    TotalStartTime: '2024-01-10T09:12:40',
    Total: 3.214,
    Yesterday: 0.412,
    Today: 0.187,
    Period: 0,
    Power: 12,
    ApparentPower: 20,
    ReactivePower: 16,
    Factor: 0.6,
    Voltage: 231,
    Current: 0.087,
  },
});
const TASMOTA_CLIMATE = JSON.stringify({
  Time: '2024-05-01T12:00:00',
  AM2301: { Temperature: 21.3, Humidity: 40.1, DewPoint: 7.2 },
  TempUnit: 'C',
});
const TASMOTA_STATE = JSON.stringify({
  Time: '2024-05-01T12:00:00',
  Uptime: '0T01:02:03',
  UptimeSec: 3723,
  Heap: 25,
  SleepMode: 'Dynamic',
  Sleep: 50,
  LoadAvg: 19,
  MqttCount: 1,
  POWER: 'ON',
  Wifi: { AP: 1, SSId: 'home', BSSId: 'AA:BB:CC:DD:EE:FF', Channel: 6, Mode: '11n', RSSI: 78, Signal: -61 },
});
const Z2M_SENSOR = JSON.stringify({
  battery: 90,
  humidity: 40,
  linkquality: 120,
  temperature: 21.5,
  voltage: 3000,
});
const SHELLY_ID = 'shellyplus1pm-a8032ab12345';
const SHELLY_SWITCH = JSON.stringify({
  id: 0,
  source: 'init',
  output: true,
  apower: 8.9,
  voltage: 236.2,
  current: 0.04,
  aenergy: { total: 12.34, by_minute: [0, 0, 0], minute_ts: 1714564800 },
  temperature: { tC: 43.2, tF: 109.8 },
});
const SHELLY_NOTIFY = JSON.stringify({
  src: SHELLY_ID,
  dst: `${SHELLY_ID}/events`,
  method: 'NotifyStatus',
  params: { ts: 1714564800.53, 'switch:0': { id: 0, apower: 9.1, current: 0.041 } },
});

describe('bridge mode through mosquitto', () => {
  it('maps Tasmota, Zigbee2MQTT and Shelly Gen2 messages to entries and rejects the rest naming the mapping', async () => {
    const prefix = randomPrefix();
    const gw = await startPrefixedGateway(redis.server.url, {
      'gateway.mode': 'bridge',
      'gateway.id': `map-${prefix}`,
      'bridge.url': mosquitto.url,
      'bridge.group': prefix,
      'bridge.connections': 2,
      mapping: 'tasmota,zigbee2mqtt,shelly-gen2',
    });
    try {
      const p = mosquitto.port;
      await pub(p, 'tele/kitchen/SENSOR', TASMOTA_ENERGY);
      await pub(p, 'tele/kitchen/SENSOR', TASMOTA_ENERGY);
      await pub(p, 'tele/bath/SENSOR', TASMOTA_CLIMATE);
      await pub(p, 'tele/kitchen/STATE', TASMOTA_STATE);
      await pub(p, 'tele/kitchen/SENSOR', '{"Time":"2024-05-01T12:00:00","ENERGY":');
      await pub(p, 'zigbee2mqtt/Hall Sensor', Z2M_SENSOR);
      await pub(p, 'zigbee2mqtt/bridge/state', '{"state":"online"}');
      await pub(p, `${SHELLY_ID}/status/switch:0`, SHELLY_SWITCH);
      await pub(p, `${SHELLY_ID}/events/rpc`, SHELLY_NOTIFY);
      await pub(p, `${SHELLY_ID}/events/rpc`, '{"src":"x","method":"Reboot"}');
      await pub(p, 'devices/native-1/telemetry/battery', '77');

      // 2 energy + climate + state + 4 from z2m (climate, battery, link, power) + 2 shelly + 1 native.
      const entries = await waitFor(
        async () => {
          const all = await readAllTelemetry(redis.client, gw.keys);
          return all.length >= 11 ? all : undefined;
        },
        20_000,
        '11 entries',
      );
      const rej = await waitFor(
        async () => {
          const r = await rejected(gw.keys);
          return r.length >= 2 ? r : undefined;
        },
        10_000,
        '2 rejected entries',
      );
      expect(entries).toHaveLength(11);
      expect(by(entries, 'tasmota-kitchen', 'energy')).toEqual([
        { power: 12, voltage: 231, current: 0.087, factor: 0.6, today: 0.187, total: 3.214 },
        { power: 12, voltage: 231, current: 0.087, factor: 0.6, today: 0.187, total: 3.214 },
      ]);
      expect(by(entries, 'tasmota-bath', 'climate')).toEqual([
        { temperature: 21.3, humidity: 40.1, dewpoint: 7.2 },
      ]);
      expect(by(entries, 'tasmota-kitchen', 'state')).toEqual([
        { uptime: 3723, power: 'ON', rssi: 78, signal: -61, heap: 25 },
      ]);
      expect(by(entries, 'z2m-hall-sensor', 'climate')).toEqual([{ temperature: 21.5, humidity: 40 }]);
      expect(by(entries, 'z2m-hall-sensor', 'battery')).toEqual([90]);
      expect(by(entries, 'z2m-hall-sensor', 'power')).toEqual([{ voltage: 3000 }]);
      expect(by(entries, SHELLY_ID, 'switch-0')).toEqual([
        { output: true, power: 8.9, voltage: 236.2, current: 0.04, energy: 12.34, temperature: 43.2 },
        { power: 9.1, current: 0.041 },
      ]);
      const notify = entries.find((e) => e.deviceId === SHELLY_ID && e.time === 1714564800530);
      expect(notify, 'NotifyStatus keeps the device time (params.ts, seconds)').toBeDefined();
      expect(by(entries, 'native-1', 'battery')).toEqual([77]);
      // Vendor payloads carry no sequence: the gateway numbers each device's entries, never twice.
      const kitchen = entries.filter((e) => e.deviceId === 'tasmota-kitchen').map((e) => e.seq);
      expect(new Set(kitchen).size).toBe(3);

      expect(rej.map((r) => ({ m: r.m, r: r.r, topic: r.topic }))).toEqual(
        expect.arrayContaining([
          {
            m: 'tasmota',
            r: 'malformed: mapping tasmota, rule sensor: payload is not JSON',
            topic: 'tele/kitchen/SENSOR',
          },
          {
            m: 'shelly-gen2',
            r: expect.stringMatching(/^unmapped: mapping shelly-gen2: no rule takes this message/),
            topic: `${SHELLY_ID}/events/rpc`,
          },
        ]),
      );
      expect(rej).toHaveLength(2);
    } finally {
      await gw.stop();
    }
  });
});

describe('broker mode (aedes)', () => {
  it('takes mapped topics from the device they name, rejects the rest with the mapping and the reason', async () => {
    const gw = await startPrefixedGateway(redis.server.url, { mapping: 'tasmota' });
    try {
      const port = gw.ports!.tcp;
      await pub(port, 'tele/kitchen/SENSOR', TASMOTA_ENERGY, 'tasmota-kitchen');
      await pub(port, 'tele/kitchen/SENSOR', TASMOTA_CLIMATE, 'tasmota-kitchen');
      await pub(port, 'tele/kitchen/LWT', 'Online', 'tasmota-kitchen');
      await pub(port, 'tele/kitchen/SENSOR', TASMOTA_ENERGY, 'tasmota-intruder');
      await pub(port, 'stat/kitchen/RESULT', '{"POWER":"ON"}', 'tasmota-kitchen');
      await pub(port, 'tele/kitchen/SENSOR', '{"Time":"x","Switch1":"ON"}', 'tasmota-kitchen');
      await pub(port, 'devices/native-2/telemetry/t', '{"v":1}', 'native-2');

      const entries = await waitFor(
        async () => {
          const all = await readAllTelemetry(redis.client, gw.keys);
          return all.length >= 3 ? all : undefined;
        },
        20_000,
        '3 entries',
      );
      const rej = await waitFor(
        async () => {
          const r = await rejected(gw.keys);
          return r.length >= 3 ? r : undefined;
        },
        10_000,
        '3 rejected entries',
      );
      expect(entries).toHaveLength(3);
      expect(by(entries, 'tasmota-kitchen', 'energy')).toHaveLength(1);
      expect(by(entries, 'tasmota-kitchen', 'climate')).toEqual([
        { temperature: 21.3, humidity: 40.1, dewpoint: 7.2 },
      ]);
      expect(by(entries, 'native-2', 't')).toEqual([{ v: 1 }]);
      expect(rej.map((r) => ({ m: r.m, r: r.r, d: r.d }))).toEqual(
        expect.arrayContaining([
          {
            m: 'tasmota',
            r: 'unauthorized: mapping tasmota: device tasmota-intruder may not publish as tasmota-kitchen',
            d: 'tasmota-intruder',
          },
          {
            m: 'tasmota',
            r: 'unmapped: topic matches no template and no rule of mapping tasmota',
            d: 'tasmota-kitchen',
          },
          {
            m: 'tasmota',
            r: 'malformed: mapping tasmota, rule sensor: payload holds none of the readings (energy, climate)',
            d: 'tasmota-kitchen',
          },
        ]),
      );
      // The LWT was ignored by its rule: neither an entry nor a rejection.
      expect(rej).toHaveLength(3);
    } finally {
      await gw.stop();
    }
  });
});

describe('firmware-sim Tasmota-style devices', () => {
  it('are taken by the tasmota mapping: plugs give energy, climate sensors climate, both state; their LWT is ignored', async () => {
    const gw = await startPrefixedGateway(redis.server.url, { mapping: 'tasmota' });
    const prefix = gw.keys.prefix;
    const fleet = await startFleet({
      'redis.url': redis.server.url,
      'redis.keyPrefix': prefix,
      'redis.partitions': 4,
      'mqtt.url': gw.url,
      'fleet.agents': 0,
      'fleet.mqtt': 0,
      'fleet.tasmota': 2,
      'fleet.idPrefix': 'tas',
      'profile.tasmota.telePeriod': 200,
    });
    try {
      expect(fleet.tasmota).toEqual(['tasmota-tas-t-0', 'tasmota-tas-t-1']);
      const entries = await waitFor(
        async () => {
          const all = await readAllTelemetry(redis.client, gw.keys);
          const types = new Set(all.map((e) => `${e.deviceId}/${e.type}`));
          return types.size >= 4 ? all : undefined;
        },
        20_000,
        'energy, climate and state entries',
      );
      expect(new Set(entries.map((e) => `${e.deviceId}/${e.type}`))).toEqual(
        new Set([
          'tasmota-tas-t-0/energy',
          'tasmota-tas-t-0/state',
          'tasmota-tas-t-1/climate',
          'tasmota-tas-t-1/state',
        ]),
      );
      expect(entries.find((e) => e.type === 'energy')?.payload).toMatchObject({ power: expect.any(Number) });
    } finally {
      await fleet.stop();
      await gw.stop();
    }
    expect(fleet.tasmotaStats().acked).toBeGreaterThan(0);
    expect(await rejected(gw.keys)).toEqual([]);
  });
});
