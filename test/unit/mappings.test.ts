/**
 * Vendor mappings without servers: topic patterns and their filters, picks,
 * payload forms, device id templates, the built-in mappings on recorded-style
 * payloads, and the loader's errors naming file and field.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FormError, parseForm } from '../../gateway/mappings/forms.js';
import { builtinMappings, compileMapping, loadMapping, MappingError } from '../../gateway/mappings/index.js';
import { TopicPattern } from '../../gateway/mappings/pattern.js';
import { Pick } from '../../gateway/mappings/picks.js';
import { resolve } from '../../gateway/mappings/rule.js';
import { Template } from '../../gateway/mappings/template.js';

const pattern = (p: string) => new TopicPattern(p, 'test', 'topic');
const pick = (p: string) => new Pick(p, 'test', 'value');
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('topic patterns', () => {
  it('capture named parts and give the MQTT filter', () => {
    const p = pattern('tele/{device}/SENSOR');
    expect(p.filter).toBe('tele/+/SENSOR');
    expect(p.match('tele/kitchen/SENSOR')).toEqual({ device: 'kitchen' });
    expect(p.match('tele/kitchen/STATE')).toBeUndefined();
    expect(p.match('tele/kitchen/SENSOR/x')).toBeUndefined();
    expect(p.match('tele//SENSOR')).toBeUndefined();
  });

  it('capture parts of a level, and + and # as in MQTT', () => {
    const p = pattern('{device}/status/{component}:{index}');
    expect(p.filter).toBe('+/status/+');
    expect(p.match('shelly-1/status/switch:0')).toEqual({
      device: 'shelly-1',
      component: 'switch',
      index: '0',
    });
    expect(p.match('shelly-1/status/sys')).toBeUndefined();
    const rest = pattern('zigbee2mqtt/bridge/#');
    expect(rest.match('zigbee2mqtt/bridge/state')).toEqual({});
    expect(rest.match('zigbee2mqtt/bridge')).toEqual({}); // # matches the parent [MQTT-4.7.1-2]
    expect(pattern('+/online').match('$SYS/online')).toBeUndefined(); // [MQTT-4.7.2-1]
  });

  it('refuse malformed patterns', () => {
    expect(() => pattern('a/#/b')).toThrow(MappingError);
    expect(() => pattern('a/x+/b')).toThrow(/stand alone/);
    expect(() => pattern('{a}/{a}')).toThrow(/twice/);
    expect(() => pattern('{a}{b}')).toThrow(/text between/);
    expect(() => pattern('{1x}')).toThrow(/bad part name/);
  });
});

describe('picks', () => {
  const payload = {
    ENERGY: { Power: 12, Voltage: 230 },
    AM2301: { Temperature: 21.3 },
    params: { 'switch:0': { apower: 4 } },
    list: [5, 6],
    nothing: null,
  };
  it('walk names, quoted keys, indexes and any member', () => {
    expect(pick('$').from(7)).toBe(7);
    expect(pick('$.ENERGY.Power').from(payload)).toBe(12);
    expect(pick('$.params["switch:0"].apower').from(payload)).toBe(4);
    expect(pick('$.list[1]').from(payload)).toBe(6);
    expect(pick('$.*.Temperature').from(payload)).toBe(21.3);
    expect(pick('$.ENERGY.Current').from(payload)).toBeUndefined();
    expect(pick('$.nothing').from(payload)).toBeUndefined();
    expect(pick('$.ENERGY.Power.x').from(payload)).toBeUndefined();
  });
  it('refuse malformed paths', () => {
    expect(() => pick('ENERGY.Power')).toThrow(/must start with \$/);
    expect(() => pick('$.a[x]')).toThrow(/bad bracket/);
    expect(() => pick('$..a')).toThrow(MappingError);
  });
});

describe('payload forms', () => {
  it('read JSON, bare numbers and key=value pairs', () => {
    expect(parseForm('json', Buffer.from('{"a":1}'))).toEqual({ a: 1 });
    expect(parseForm('number', Buffer.from(' 21.5\n'))).toBe(21.5);
    expect(parseForm('keyvalue', Buffer.from('temp=21.5,hum=40 state=ON'))).toEqual({
      temp: 21.5,
      hum: 40,
      state: 'ON',
    });
  });
  it('say why a payload is not in its form', () => {
    expect(() => parseForm('json', Buffer.from('{nope'))).toThrow(FormError);
    expect(() => parseForm('number', Buffer.from('ON'))).toThrow(/not a number/);
    expect(() => parseForm('number', Buffer.from(''))).toThrow(/not a number/);
    expect(() => parseForm('keyvalue', Buffer.from('a=1 b'))).toThrow(/"b" is not key=value/);
  });
});

describe('templates', () => {
  it('fill in named parts, with filters', () => {
    expect(new Template('tasmota-{device}', ['device'], 't', 'device').render({ device: 'kitchen' })).toBe(
      'tasmota-kitchen',
    );
    expect(
      new Template('z2m-{device|slug}', ['device'], 't', 'device').render({ device: 'Living Room!' }),
    ).toBe('z2m-living-room');
  });
  it('refuse parts the pattern does not name', () => {
    expect(() => new Template('x-{id}', ['device'], 'f.yaml', 'rules[0].device')).toThrow(
      'mapping f.yaml: field "rules[0].device" "x-{id}" uses {id}, which the topic pattern does not name (it names: device)',
    );
    expect(() => new Template('x-{device|upper}', ['device'], 't', 'd')).toThrow(/unknown filter/);
  });
});

describe('built-in mappings on recorded-style payloads', () => {
  it('are tasmota, zigbee2mqtt and shelly-gen2', () => {
    expect(builtinMappings()).toEqual(['shelly-gen2', 'tasmota', 'zigbee2mqtt']);
  });

  it('tasmota: SENSOR energy and climate, STATE, LWT ignored, other topics not taken', () => {
    const m = loadMapping('tasmota');
    const sensor = resolve(
      m,
      'tele/kitchen/SENSOR',
      json({
        Time: '2024-05-01T12:00:00',
        ENERGY: {
          TotalStartTime: '2024-01-01T00:00:00',
          Total: 3.2,
          Today: 0.4,
          Power: 12,
          Voltage: 231,
          Current: 0.09,
        },
      }),
    );
    expect(sensor).toMatchObject({
      kind: 'readings',
      deviceId: 'tasmota-kitchen',
      time: undefined,
      readings: [
        { type: 'energy', payload: { power: 12, voltage: 231, current: 0.09, today: 0.4, total: 3.2 } },
      ],
    });
    const climate = resolve(
      m,
      'tele/bath/SENSOR',
      json({ Time: '2024-05-01T12:00:00', AM2301: { Temperature: 21.3, Humidity: 40 }, TempUnit: 'C' }),
    );
    expect(climate).toMatchObject({
      readings: [{ type: 'climate', payload: { temperature: 21.3, humidity: 40 } }],
    });
    const state = resolve(
      m,
      'tele/kitchen/STATE',
      json({
        Time: '2024-05-01T12:00:00',
        UptimeSec: 3723,
        Heap: 25,
        POWER: 'ON',
        Wifi: { RSSI: 78, Signal: -61 },
      }),
    );
    expect(state).toMatchObject({
      readings: [{ type: 'state', payload: { uptime: 3723, power: 'ON', rssi: 78, signal: -61, heap: 25 } }],
    });
    expect(resolve(m, 'tele/kitchen/LWT', Buffer.from('Online'))).toMatchObject({ kind: 'ignored' });
    expect(resolve(m, 'stat/kitchen/RESULT', json({ POWER: 'ON' }))).toEqual({ kind: 'none' });
    expect(resolve(m, 'tele/kitchen/SENSOR', Buffer.from('{"Time":'))).toMatchObject({
      kind: 'rejected',
      reason: 'malformed',
      detail: 'mapping tasmota, rule sensor: payload is not JSON',
    });
    expect(resolve(m, 'tele/kitchen/SENSOR', json({ Time: 'x', Switch1: 'ON' }))).toMatchObject({
      kind: 'rejected',
      reason: 'malformed',
      detail: 'mapping tasmota, rule sensor: payload holds none of the readings (energy, climate)',
    });
  });

  it('zigbee2mqtt: device state, last_seen as time, bridge topics ignored', () => {
    const m = loadMapping('zigbee2mqtt');
    const out = resolve(
      m,
      'zigbee2mqtt/Hall Sensor',
      json({
        temperature: 21.5,
        humidity: 40,
        battery: 90,
        linkquality: 120,
        last_seen: '2024-05-01T12:00:00.000Z',
      }),
    );
    expect(out).toMatchObject({
      kind: 'readings',
      deviceId: 'z2m-hall-sensor',
      time: Date.parse('2024-05-01T12:00:00.000Z'),
      readings: [
        { type: 'climate', payload: { temperature: 21.5, humidity: 40 } },
        { type: 'battery', payload: 90 },
        { type: 'link', payload: 120 },
      ],
    });
    expect(resolve(m, 'zigbee2mqtt/bridge/state', json({ state: 'online' }))).toMatchObject({
      kind: 'ignored',
    });
    expect(resolve(m, 'zigbee2mqtt/bridge', Buffer.from('x'))).toMatchObject({ kind: 'ignored' });
    expect(resolve(m, 'zigbee2mqtt/lamp/set', json({ state: 'ON' }))).toMatchObject({ kind: 'ignored' });
    expect(resolve(m, 'zigbee2mqtt/lamp', json({ state: 'ON' }))).toMatchObject({
      readings: [{ type: 'state', payload: { value: 'ON' } }],
    });
  });

  it('shelly-gen2: component status and NotifyStatus frames with their time in seconds', () => {
    const m = loadMapping('shelly-gen2');
    const id = 'shellyplus1pm-a8032ab12345';
    const status = resolve(
      m,
      `${id}/status/switch:0`,
      json({
        id: 0,
        source: 'init',
        output: true,
        apower: 8.9,
        voltage: 236.2,
        current: 0.04,
        aenergy: { total: 12.34, by_minute: [0, 0, 0], minute_ts: 1714564800 },
        temperature: { tC: 43.2, tF: 109.8 },
      }),
    );
    expect(status).toMatchObject({
      kind: 'readings',
      deviceId: id,
      readings: [
        {
          type: 'switch-0',
          payload: {
            output: true,
            power: 8.9,
            voltage: 236.2,
            current: 0.04,
            energy: 12.34,
            temperature: 43.2,
          },
        },
      ],
    });
    const notify = resolve(
      m,
      `${id}/events/rpc`,
      json({
        src: id,
        dst: `${id}/events`,
        method: 'NotifyStatus',
        params: { ts: 1714564800.53, 'switch:0': { id: 0, apower: 9.1, current: 0.041 } },
      }),
    );
    expect(notify).toMatchObject({
      time: 1714564800530,
      readings: [{ type: 'switch-0', payload: { power: 9.1, current: 0.041 } }],
    });
    expect(resolve(m, `${id}/events/rpc`, json({ method: 'NotifyEvent', params: {} }))).toMatchObject({
      kind: 'ignored',
    });
    expect(resolve(m, `${id}/status/sys`, json({ uptime: 5 }))).toMatchObject({ kind: 'ignored' });
    expect(resolve(m, `${id}/status/em:0`, json({ id: 0 }))).toEqual({ kind: 'none' });
    expect(resolve(m, `${id}/events/rpc`, json({ method: 'Reboot' }))).toMatchObject({
      kind: 'rejected',
      reason: 'unmapped',
      detail: expect.stringContaining(
        'mapping shelly-gen2: no rule takes this message (notify-status wants $.method',
      ),
    });
  });
});

describe('the loader', () => {
  const minimal = { topic: 'sensors/{id}', device: 'dev-{id}', readings: [{ type: 't', value: '$' }] };
  const fails = (doc: unknown) => () => compileMapping(doc, 'my.yaml', 'my');

  it('compiles a minimal mapping, named after its file, with bare numbers', () => {
    const m = compileMapping({ rules: [{ ...minimal, payload: 'number' }] }, 'my.yaml', 'my');
    expect(m.name).toBe('my');
    expect(resolve(m, 'sensors/a', Buffer.from('21.5'))).toMatchObject({
      deviceId: 'dev-a',
      readings: [{ type: 't', payload: 21.5 }],
    });
    expect(resolve(m, 'sensors/a', Buffer.from('warm'))).toMatchObject({
      kind: 'rejected',
      detail: 'mapping my, rule rule[0]: payload "warm" is not a number',
    });
  });

  it('names the file and the field of every mistake', () => {
    expect(fails({ rules: [] })).toThrow('mapping my.yaml: field "rules" must be a non-empty list of rules');
    expect(fails({ rules: [{ ...minimal, topics: 'x' }] })).toThrow(
      'mapping my.yaml: field "rules[0].topics" is not a known field',
    );
    expect(fails({ rules: [{ ...minimal, payload: 'xml' }] })).toThrow(
      'field "rules[0].payload" "xml" must be one of json, number, keyvalue',
    );
    expect(fails({ rules: [{ ...minimal, device: undefined }] })).toThrow(
      'field "rules[0].device" is required',
    );
    expect(fails({ rules: [{ ...minimal, readings: [{ type: 't' }] }] })).toThrow(
      'field "rules[0].readings[0]" needs exactly one of value',
    );
    expect(fails({ rules: [{ ...minimal, readings: [{ type: 'a b', value: '$' }] }] })).toThrow(
      'field "rules[0].readings[0].type" "a b" must match',
    );
    expect(fails({ rules: [{ ...minimal, readings: [{ type: 't', value: 'temp' }] }] })).toThrow(
      'field "rules[0].readings[0].value" "temp" must start with $',
    );
    expect(fails({ rules: [{ ...minimal, time: { pick: '$.t', unit: 'h' } }] })).toThrow(
      'field "rules[0].time.unit" "h" must be ms or s',
    );
    expect(fails({ rules: [{ topic: 'a/#', ignore: true, device: 'x' }] })).toThrow(
      'field "rules[0].device" has no use in an ignore rule',
    );
    expect(fails({ rules: [minimal, minimal].map((r) => ({ ...r, name: 'same' })) })).toThrow(
      'field "rules[1].name" "same" is used by an earlier rule',
    );
  });

  it('reads files and says what is wrong with one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleet-mapping-'));
    const good = join(dir, 'kv.yaml');
    writeFileSync(
      good,
      'name: kv\nrules:\n  - topic: kv/{id}\n    payload: keyvalue\n    device: kv-{id}\n    readings:\n      - type: climate\n        fields: { temperature: $.temp }\n',
    );
    expect(resolve(loadMapping(good), 'kv/1', Buffer.from('temp=20 x=1'))).toMatchObject({
      readings: [{ type: 'climate', payload: { temperature: 20 } }],
    });
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'rules: [ {topic: a\n');
    expect(() => loadMapping(bad)).toThrow(`mapping ${bad} is not valid YAML`);
    expect(() => loadMapping(join(dir, 'none.yaml'))).toThrow(/cannot be read/);
    expect(() => loadMapping('tasmotta')).toThrow(
      'mapping tasmotta is neither a built-in mapping (shelly-gen2, tasmota, zigbee2mqtt) nor a file path',
    );
  });
});
