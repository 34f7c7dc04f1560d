/**
 * Sparkplug B without a broker: the embedded schema is the .proto file, every
 * supported datatype survives a protobuf round trip exactly, topics parse and
 * format, and the handler resolves aliases from births, takes 255 -> 0 as no
 * gap, asks for a rebirth on a gap, and writes nothing twice for a redelivery.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '#shared/log.js';
import { createRegistry } from '#shared/metrics.js';
import {
  DataType,
  decodeSparkplug,
  encodeSparkplug,
  type MetricInput,
  type MetricValue,
} from '#shared/sparkplug/codec.js';
import { SPARKPLUG_B_PROTO } from '#shared/sparkplug/schema.js';
import {
  deviceTopic,
  groupFilter,
  nodeTopic,
  parseTopic,
  sparkplugDeviceId,
  splitDeviceId,
  stateTopic,
} from '#shared/sparkplug/topic.js';
import type { IncomingPublish, IngestSink, SinkReading } from '../../gateway/ingest.js';
import { SparkplugCommands } from '../../gateway/sparkplug/commands.js';
import { SparkplugHandler } from '../../gateway/sparkplug/handler.js';
import { NodeSessions } from '../../gateway/sparkplug/session.js';

const root = join(import.meta.dirname, '..', '..');

describe('schema', () => {
  it('the embedded schema text is the .proto file', () => {
    expect(SPARKPLUG_B_PROTO).toBe(readFileSync(join(root, 'shared/sparkplug/sparkplug_b.proto'), 'utf8'));
  });
});

describe('codec', () => {
  const cases: Array<[keyof typeof DataType, MetricValue | bigint, MetricValue]> = [
    ['Int8', -128, -128],
    ['Int8', 127, 127],
    ['Int16', -32768, -32768],
    ['Int32', -2147483648, -2147483648],
    ['Int32', 2147483647, 2147483647],
    ['Int64', -9007199254740991, -9007199254740991],
    ['Int64', -9223372036854775808n, '-9223372036854775808'],
    ['UInt8', 255, 255],
    ['UInt16', 65535, 65535],
    ['UInt32', 4294967295, 4294967295],
    ['UInt64', 9007199254740991, 9007199254740991],
    ['UInt64', 18446744073709551615n, '18446744073709551615'],
    ['Float', 1.5, 1.5],
    ['Double', -0.1, -0.1],
    ['Boolean', true, true],
    ['Boolean', false, false],
    ['String', 'grüße', 'grüße'],
    ['Text', 'a\nb', 'a\nb'],
    ['UUID', '3f1c2b4a-0000-4000-8000-000000000001', '3f1c2b4a-0000-4000-8000-000000000001'],
    ['DateTime', 1714564800123, 1714564800123],
    ['Bytes', 'AAEC/w==', 'AAEC/w=='],
    ['File', 'aGVsbG8=', 'aGVsbG8='],
    ['Double', null, null],
  ];

  it.each(cases)('%s %s round-trips exactly', (type, input, expected) => {
    const metric: MetricInput = {
      name: 'm',
      alias: 7,
      timestamp: 1714564800000,
      datatype: DataType[type],
      value: input,
    };
    const decoded = decodeSparkplug(
      encodeSparkplug({ timestamp: 1714564800001, seq: 255, metrics: [metric] }),
    );
    expect(decoded.timestamp).toBe(1714564800001);
    expect(decoded.seq).toBe(255);
    expect(decoded.metrics).toEqual([
      { name: 'm', alias: 7, timestamp: 1714564800000, datatype: DataType[type], value: expected },
    ]);
  });

  it('a DataSet round-trips with its columns, types and rows', () => {
    const value = {
      columns: ['id', 'label', 'ok'],
      types: ['Int32', 'String', 'Boolean'],
      rows: [[-1, 'a', true]],
    };
    const m = decodeSparkplug(
      encodeSparkplug({ metrics: [{ name: 'ds', datatype: DataType.DataSet, value: value as MetricValue }] }),
    ).metrics[0];
    expect(m?.value).toEqual(value);
  });

  it('refuses bytes that are no Sparkplug payload, a value in the wrong field, an unsupported datatype, seq over 255', () => {
    expect(() => decodeSparkplug(Buffer.from('{"not":"protobuf"}'))).toThrow(/not a Sparkplug B protobuf/);
    const wrong = encodeSparkplug({ metrics: [{ name: 'x', datatype: DataType.Double, value: 1 }] });
    // Re-label the double as an Int32 (field 4 = datatype): its value is in the wrong field.
    const relabelled = Buffer.from(wrong);
    relabelled[relabelled.indexOf(0x20) + 1] = DataType.Int32;
    expect(() => decodeSparkplug(relabelled)).toThrow(/Int32 carries its value in intValue, not doubleValue/);
    const template = Buffer.from(
      encodeSparkplug({ metrics: [{ name: 't', datatype: DataType.Boolean, value: true }] }),
    );
    template[template.indexOf(0x20) + 1] = DataType.Template;
    expect(() => decodeSparkplug(template)).toThrow(/Template is not supported/);
    expect(() => decodeSparkplug(encodeSparkplug({ seq: 256, metrics: [] }))).toThrow(/seq 256 is over 255/);
  });
});

describe('topics', () => {
  it('parses and formats node, device and STATE topics, and refuses the rest', () => {
    expect(parseTopic('spBv1.0/G1/NBIRTH/n1')).toEqual({
      kind: 'node',
      group: 'G1',
      type: 'NBIRTH',
      node: 'n1',
    });
    expect(parseTopic('spBv1.0/G1/DDATA/n1/d1')).toEqual({
      kind: 'device',
      group: 'G1',
      type: 'DDATA',
      node: 'n1',
      device: 'd1',
    });
    expect(parseTopic('spBv1.0/STATE/host1')).toEqual({ kind: 'state', hostId: 'host1' });
    for (const bad of [
      'spBv1.0/G1/NDATA',
      'spBv1.0/G1/DDATA/n1',
      'spBv1.0/G1/NDATA/n1/d1',
      'spBv1.0/G1/XDATA/n1',
      'spAv1.0/G1/NDATA/n1',
      'spBv1.0//NDATA/n1',
    ])
      expect(parseTopic(bad)).toBeUndefined();
    expect(nodeTopic('G1', 'NCMD', 'n1')).toBe('spBv1.0/G1/NCMD/n1');
    expect(deviceTopic('G1', 'DCMD', 'n1', 'd1')).toBe('spBv1.0/G1/DCMD/n1/d1');
    expect(stateTopic('h')).toBe('spBv1.0/STATE/h');
    expect(groupFilter(undefined)).toBe('spBv1.0/#');
    expect(groupFilter('G1')).toBe('spBv1.0/G1/#');
    expect(sparkplugDeviceId('G1', 'n1')).toBe('G1:n1');
    expect(splitDeviceId(sparkplugDeviceId('G1', 'n1', 'd1'))).toEqual({
      group: 'G1',
      node: 'n1',
      device: 'd1',
    });
    expect(splitDeviceId('plain-device')).toBeUndefined();
  });
});

/** A handler over a sink that records what it is asked, every `done` at once. */
function harness() {
  const appended: Array<[string, SinkReading]> = [];
  const rejected: string[] = [];
  const presence: Array<[string, string]> = [];
  const published: string[] = [];
  let dones = 0;
  const sink: IngestSink = {
    append: (deviceId, readings, _pub, _label, done) => {
      for (const r of readings) appended.push([deviceId, r]);
      done();
    },
    reject: (reason, detail, _pub, _d, done) => {
      rejected.push(`${reason}: ${detail}`);
      done();
    },
    presence: (deviceId, event, _p, done) => {
      presence.push([deviceId, event]);
      done();
    },
    seen: () => {},
  };
  let now = 1_000;
  const handler = new SparkplugHandler(
    { enabled: true, groups: [], maxNodes: 10, rebirthIntervalMs: 0, maxPayloadBytes: 8192 },
    {
      publish: async (topic) => {
        published.push(topic);
      },
      clock: { now: () => now++ } as never,
      logger: silentLogger(),
      registry: createRegistry({}, false),
    },
  );
  const send = (topic: string, payload: Buffer, identity?: string) => {
    const pub: IncomingPublish = { topic, payload, identity };
    handler.handle(pub, sink, () => dones++);
  };
  return { handler, send, appended, rejected, presence, published, dones: () => dones };
}

const birth = (seq: number, bdSeq = 0) =>
  encodeSparkplug({
    timestamp: 1,
    seq,
    metrics: [
      { name: 'bdSeq', datatype: DataType.Int64, value: bdSeq },
      { name: 'temp', alias: 1, datatype: DataType.Float, value: 20 },
    ],
  });
const data = (seq: number, alias = 1, timestamp = 100 + seq) =>
  encodeSparkplug({ timestamp, seq, metrics: [{ alias, datatype: DataType.Float, value: 21 }] });

describe('handler', () => {
  it('resolves an alias to the name and datatype of the birth certificate', () => {
    const h = harness();
    h.send('spBv1.0/G/NBIRTH/n', birth(0));
    h.send('spBv1.0/G/NDATA/n', data(1));
    expect(h.appended.at(-1)).toEqual([
      'G:n',
      {
        time: 101,
        type: 'sparkplug',
        payload: { name: 'temp', datatype: 'Float', value: 21, timestamp: 101, seq: 1 },
      },
    ]);
    expect(h.presence).toEqual([['G:n', 'birth']]);
    expect(h.published).toEqual([]);
    expect(h.dones()).toBe(2);
  });

  it('takes seq 255 -> 0 as no gap, and asks for a rebirth on a gap (the message is still taken)', () => {
    const h = harness();
    h.send('spBv1.0/G/NBIRTH/n', birth(254));
    h.send('spBv1.0/G/NDATA/n', data(255));
    h.send('spBv1.0/G/NDATA/n', data(0));
    h.send('spBv1.0/G/NDATA/n', data(1));
    expect(h.published).toEqual([]);
    h.send('spBv1.0/G/NDATA/n', data(3));
    expect(h.published).toEqual(['spBv1.0/G/NCMD/n']);
    expect(h.appended.filter(([, r]) => (r.payload as { name: string }).name === 'temp')).toHaveLength(5);
  });

  it('rejects an unknown alias and asks for a rebirth; a message of a node never born asks for one too', () => {
    const h = harness();
    h.send('spBv1.0/G/NDATA/x', data(5));
    expect(h.published).toEqual(['spBv1.0/G/NCMD/x']);
    expect(h.rejected).toEqual([
      'unknown-alias: sparkplug NDATA: alias 1 not defined by a birth certificate of G:x; rebirth requested',
    ]);
    h.send('spBv1.0/G/NBIRTH/n', birth(0));
    h.send('spBv1.0/G/NDATA/n', data(1, 42));
    expect(h.rejected.at(-1)).toMatch(/^unknown-alias: sparkplug NDATA: alias 42/);
    expect(h.published).toEqual(['spBv1.0/G/NCMD/x', 'spBv1.0/G/NCMD/n']);
  });

  it('a redelivery (same seq and timestamp) is acknowledged and not written again', () => {
    const h = harness();
    h.send('spBv1.0/G/NBIRTH/n', birth(0));
    h.send('spBv1.0/G/NBIRTH/n', birth(0));
    h.send('spBv1.0/G/NDATA/n', data(1));
    h.send('spBv1.0/G/NDATA/n', data(1));
    expect(h.appended).toHaveLength(3);
    expect(h.dones()).toBe(4);
    expect(h.published).toEqual([]);
  });

  it('NDEATH of the current bdSeq takes the node and its devices offline; of another bdSeq it is ignored', () => {
    const h = harness();
    const death = (bdSeq: number) =>
      encodeSparkplug({ metrics: [{ name: 'bdSeq', datatype: DataType.Int64, value: bdSeq }] });
    h.send('spBv1.0/G/NBIRTH/n', birth(0, 3));
    h.send('spBv1.0/G/DBIRTH/n/d', encodeSparkplug({ timestamp: 2, seq: 1, metrics: [] }));
    h.send('spBv1.0/G/NDEATH/n', death(2));
    expect(h.presence).toEqual([
      ['G:n', 'birth'],
      ['G:n:d', 'birth'],
    ]);
    h.send('spBv1.0/G/NDEATH/n', death(3));
    expect(h.presence.slice(2)).toEqual([
      ['G:n', 'death'],
      ['G:n:d', 'death'],
    ]);
    expect(h.dones()).toBe(4);
  });

  it('broker mode: only the edge node itself publishes for it and subscribes to its commands', () => {
    const h = harness();
    h.send('spBv1.0/G/NBIRTH/n', birth(0), 'G:other');
    expect(h.rejected).toEqual(['unauthorized: sparkplug: device G:other may not publish as edge node G:n']);
    h.send('spBv1.0/G/NBIRTH/n', birth(0), 'G:n');
    expect(h.presence).toEqual([['G:n', 'birth']]);
    expect(h.handler.allowsSubscribe('G:n', 'spBv1.0/G/NCMD/n')).toBe(true);
    expect(h.handler.allowsSubscribe('G:n', 'spBv1.0/G/DCMD/n/+')).toBe(true);
    expect(h.handler.allowsSubscribe('G:n', 'spBv1.0/STATE/+')).toBe(true);
    expect(h.handler.allowsSubscribe('G:n', 'spBv1.0/G/NCMD/other')).toBe(false);
    expect(h.handler.allowsSubscribe('G:n', 'spBv1.0/G/NDATA/n')).toBe(false);
    expect(h.handler.allowsSubscribe('G:n', 'spBv1.0/#')).toBe(false);
  });

  it('routes commands of known nodes as NCMD/DCMD and leaves other ids alone', () => {
    const sessions = new NodeSessions(10);
    sessions.birth('G/n', 0, 0, 1);
    const route = new SparkplugCommands(sessions, () => 5);
    const r = route.route('G:n:d', { name: 'set', args: { metric: 'Out/Level', value: 3 } });
    expect(r?.topic).toBe('spBv1.0/G/DCMD/n/d');
    expect(decodeSparkplug(r!.payload).metrics).toEqual([
      { name: 'Out/Level', timestamp: 5, datatype: DataType.Int64, value: 3 },
    ]);
    expect(route.route('G:n', { name: 'Reboot', args: undefined })?.topic).toBe('spBv1.0/G/NCMD/n');
    expect(route.route('G:other', { name: 'x', args: {} })).toBeUndefined();
    expect(route.route('plain-device', { name: 'x', args: {} })).toBeUndefined();
  });

  it('keeps at most maxNodes sessions, the least recently born forgotten first', () => {
    const s = new NodeSessions(2);
    s.birth('G/a', 0, 0, 1);
    s.birth('G/b', 0, 0, 1);
    s.birth('G/a', 1, 0, 2);
    s.birth('G/c', 0, 0, 1);
    expect([s.get('G/a')?.bdSeq, s.get('G/b'), s.get('G/c')?.bdSeq]).toEqual([1, undefined, 0]);
    expect(s.size).toBe(2);
  });
});
