import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCommand, waitForResult } from '#shared/commands/send.js';
import type { Keys } from '#shared/keys.js';
import { DataType, encodeSparkplug } from '#shared/sparkplug/codec.js';
import { deviceTopic, nodeTopic } from '#shared/sparkplug/topic.js';
import { readResults } from '../harness/commands.js';
import { type RunningGateway, startPrefixedGateway } from '../harness/gateway.js';
import { useMosquitto } from '../harness/mosquitto.js';
import { randomPrefix } from '../harness/prefix.js';
import { useLocalRedis } from '../harness/redis-server.js';
import { type EdgeNode, startEdgeNode } from '../harness/sparkplug-edge-node.js';
import { readAllTelemetry, type StoredEntry, waitFor } from '../harness/streams.js';

const redis = useLocalRedis();
const mosquitto = useMosquitto();

type Fields = Record<string, string>;

async function stream(keys: Keys, which: 'presence' | 'rejected'): Promise<Fields[]> {
  const key = which === 'presence' ? keys.presence() : keys.rejected();
  return (await redis.client.xrange(key, '-', '+')).map(([, f]) => {
    const o: Fields = {};
    for (let i = 0; i < f.length; i += 2) o[f[i]!] = f[i + 1]!;
    return o;
  });
}

const ofDevice = (entries: StoredEntry[], deviceId: string) => entries.filter((e) => e.deviceId === deviceId);

async function entriesOf(keys: Keys, deviceId: string, atLeast: number): Promise<StoredEntry[]> {
  return waitFor(
    async () => {
      const mine = ofDevice(await readAllTelemetry(redis.client, keys), deviceId);
      return mine.length >= atLeast ? mine : undefined;
    },
    15_000,
    `${atLeast} entries of ${deviceId}`,
  );
}

async function presenceOf(keys: Keys, deviceId: string, event: string, atLeast = 1): Promise<Fields[]> {
  return waitFor(
    async () => {
      const p = (await stream(keys, 'presence')).filter((e) => e.d === deviceId && e.e === event);
      return p.length >= atLeast ? p : undefined;
    },
    15_000,
    `${atLeast} ${event} of ${deviceId}`,
  );
}

async function metric(gw: RunningGateway, name: string): Promise<number> {
  const m = await gw.gateway.registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).reduce((a, v) => a + v.value, 0);
}

const modes = [
  { mode: 'broker' as const, label: 'broker mode (aedes)' },
  { mode: 'bridge' as const, label: 'bridge mode (mosquitto)' },
];

describe.each(modes)('Sparkplug B, $label', ({ mode }) => {
  let gw: RunningGateway & { keys: Keys };
  let url: string;
  const nodes: EdgeNode[] = [];
  const edge = async (extra: Partial<Parameters<typeof startEdgeNode>[0]> = {}) => {
    const n = await startEdgeNode({ group: randomPrefix(), node: 'n1', url, ...extra });
    nodes.push(n);
    return n;
  };

  beforeAll(async () => {
    const prefix = randomPrefix();
    gw = await startPrefixedGateway(redis.server.url, {
      'gateway.mode': mode,
      'gateway.id': `sp-${prefix}`,
      'sparkplug.enabled': 'true',
      'sparkplug.rebirthInterval': 0,
      'commands.pollInterval': 200,
      ...(mode === 'bridge'
        ? { 'bridge.url': mosquitto.url, 'bridge.group': prefix, 'bridge.connections': 2 }
        : {}),
    });
    url = mode === 'broker' ? gw.url : mosquitto.url;
  });
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await gw.stop();
  });

  it('births are online presence; alias-only DDATA metrics land as entries with name, datatype, value, timestamp', async () => {
    const n = await edge();
    const node = n.nodeId;
    const dev = n.deviceId('d1');
    await presenceOf(gw.keys, node, 'birth');
    await presenceOf(gw.keys, dev, 'birth');
    await presenceOf(gw.keys, n.deviceId('d2'), 'birth');
    const before = Date.now();
    await n.data('d1');
    // Broker mode acknowledges only after the append: readable the moment the PUBACK is in.
    // (Bridge mode: mosquitto acknowledges the node; the gateway acknowledges mosquitto after the append.)
    // DBIRTH's 3 metrics, then the DDATA's 3 by alias.
    if (mode === 'broker')
      expect(ofDevice(await readAllTelemetry(redis.client, gw.keys), dev)).toHaveLength(6);
    const entries = await entriesOf(gw.keys, dev, 6);
    const last = entries.slice(3);
    expect(last.map((e) => e.type)).toEqual(['sparkplug', 'sparkplug', 'sparkplug']);
    const payloads = last.map((e) => e.payload as Record<string, unknown>);
    expect(payloads.map((p) => p.name)).toEqual(['Sensors/m0', 'Sensors/m1', 'Sensors/m2']);
    for (const p of payloads) {
      expect(p.datatype).toBe('Double');
      expect(typeof p.value).toBe('number');
      expect(p.timestamp as number).toBeGreaterThanOrEqual(before - 1000);
      expect(p.seq).toBe(3); // NBIRTH 0, DBIRTH 1 and 2, this DDATA 3
    }
    expect(last[0]!.time).toBe(payloads[0]!.timestamp);
    // Gateway sequence numbers: strictly increasing per device, the append's idempotency key.
    const seqs = entries.map((e) => e.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    expect(new Set(seqs).size).toBe(seqs.length);
    // NBIRTH's metrics are the node's entries.
    const nodeEntries = await entriesOf(gw.keys, node, 3);
    expect(nodeEntries.map((e) => (e.payload as { name: string }).name)).toContain('bdSeq');
  });

  it('a seq gap brings NCMD Node Control/Rebirth: the node rebirths, the counter counts it, the data is kept', async () => {
    const n = await edge();
    const before = await metric(gw, 'gateway_sparkplug_rebirth_requests_total');
    await n.data('d1'); // seq 3
    n.seq = 7; // skips 4..6
    await n.data('d1');
    await waitFor(async () => n.rebirths >= 1 || undefined, 10_000, 'rebirth request at the node');
    await presenceOf(gw.keys, n.nodeId, 'birth', 2);
    expect(await metric(gw, 'gateway_sparkplug_rebirth_requests_total')).toBe(before + 1);
    // Both DDATAs written (3 DBIRTH + 2 x 3), and the new DBIRTH's 3 after them.
    await entriesOf(gw.keys, n.deviceId('d1'), 12);
    expect(n.rebirths).toBe(1);
  });

  it('a wrap from seq 255 to 0 is no gap', async () => {
    const n = await edge({ devices: ['d1'], metricsPerDevice: 1 });
    // NBIRTH 0, DBIRTH 1, then 2..255, 0, 1, 2: 257 DDATAs.
    for (let i = 0; i < 257; i++) await n.data('d1');
    expect(n.seq).toBe(3);
    await entriesOf(gw.keys, n.deviceId('d1'), 258);
    expect(n.rebirths).toBe(0);
  }, 60_000);

  it('an unknown alias brings a rebirth request and a rejected entry with the reason', async () => {
    const n = await edge();
    const { group, node } = n.options;
    const now = Date.now();
    const bad = encodeSparkplug({
      timestamp: now,
      seq: n.seq++,
      metrics: [{ alias: 9999, timestamp: now, datatype: DataType.Double, value: 1.5 }],
    });
    await n.raw(deviceTopic(group, 'DDATA', node, 'd1'), bad);
    const rej = await waitFor(
      async () => (await stream(gw.keys, 'rejected')).find((r) => r.d === n.deviceId('d1')),
      10_000,
      'rejected entry',
    );
    expect(rej.r).toMatch(/^unknown-alias: sparkplug DDATA: alias 9999 not defined/);
    expect(rej.m).toBe('sparkplug');
    await waitFor(async () => n.rebirths >= 1 || undefined, 10_000, 'rebirth request');
  });

  it('a garbage payload goes to the rejected stream with its reason; good messages around it are delivered', async () => {
    const n = await edge();
    const { group, node } = n.options;
    await n.data('d1');
    await n.raw(deviceTopic(group, 'DDATA', node, 'd1'), Buffer.from('{"not":"protobuf"}'));
    await n.data('d1');
    const rej = await waitFor(
      async () => (await stream(gw.keys, 'rejected')).find((r) => r.d === n.deviceId('d1')),
      10_000,
      'rejected entry',
    );
    expect(rej.r).toMatch(/^malformed: sparkplug DDATA: not a Sparkplug B protobuf/);
    expect(rej.p).toBe('{"not":"protobuf"}');
    const entries = await entriesOf(gw.keys, n.deviceId('d1'), 9);
    expect(entries).toHaveLength(9);
  });

  it('NDEATH takes the node and its devices offline; an NDEATH of an older bdSeq is ignored', async () => {
    const n = await edge({ bdSeq: 5 });
    const { group, node } = n.options;
    await presenceOf(gw.keys, n.deviceId('d2'), 'birth');
    const stale = encodeSparkplug({
      timestamp: Date.now(),
      metrics: [{ name: 'bdSeq', datatype: DataType.Int64, value: 4 }],
    });
    await n.raw(nodeTopic(group, 'NDEATH', node), stale);
    await n.data('d1'); // after it, so once this is written the stale death was handled
    await entriesOf(gw.keys, n.deviceId('d1'), 6);
    expect((await stream(gw.keys, 'presence')).filter((p) => p.d === n.nodeId && p.e === 'death')).toEqual(
      [],
    );
    expect(await metric(gw, 'gateway_sparkplug_stale_deaths_total')).toBeGreaterThanOrEqual(1);
    // The will, as the broker publishes it when the connection drops.
    await n.kill();
    const [death] = await presenceOf(gw.keys, n.nodeId, 'death');
    expect(JSON.parse(death!.p!)).toEqual({ type: 'NDEATH', bdSeq: 5 });
    await presenceOf(gw.keys, n.deviceId('d1'), 'death');
    await presenceOf(gw.keys, n.deviceId('d2'), 'death');
  });

  it('commands to a node and a device go out as NCMD and DCMD and end succeeded once', async () => {
    const n = await edge();
    await presenceOf(gw.keys, n.deviceId('d1'), 'birth');
    const toDevice = await sendCommand(redis.client, gw.keys, n.deviceId('d1'), {
      name: 'setpoint',
      args: { metric: 'Outputs/Setpoint', value: 21.5 },
      ttlMs: 20_000,
    });
    const toNode = await sendCommand(redis.client, gw.keys, n.nodeId, {
      name: 'reboot',
      args: { metric: 'Node Control/Reboot' },
      ttlMs: 20_000,
    });
    const [rd, rn] = await Promise.all([
      waitForResult(redis.client, gw.keys, n.deviceId('d1'), toDevice.command.id, 15_000),
      waitForResult(redis.client, gw.keys, n.nodeId, toNode.command.id, 15_000),
    ]);
    expect(rd?.status).toBe('succeeded');
    expect(rd?.output).toEqual({ topic: deviceTopic(n.options.group, 'DCMD', n.options.node, 'd1') });
    expect(rn?.status).toBe('succeeded');
    expect(rn?.output).toEqual({ topic: nodeTopic(n.options.group, 'NCMD', n.options.node) });
    await waitFor(async () => n.commands.length >= 2 || undefined, 10_000, 'commands at the node');
    const got = new Map(n.commands.map(([topic, m]) => [topic, m]));
    const dcmd = got.get(deviceTopic(n.options.group, 'DCMD', n.options.node, 'd1'));
    expect(dcmd).toMatchObject({ name: 'Outputs/Setpoint', value: 21.5, datatype: DataType.Double });
    const ncmd = got.get(nodeTopic(n.options.group, 'NCMD', n.options.node));
    expect(ncmd).toMatchObject({ name: 'Node Control/Reboot', value: true, datatype: DataType.Boolean });
    await new Promise((r) => setTimeout(r, 500));
    const results = (await readResults(redis.client, gw.keys)).filter(
      (r) => r.commandId === toDevice.command.id || r.commandId === toNode.command.id,
    );
    expect(results).toHaveLength(2);
  });

  it('a redelivered message (same seq, PUBLISH dup) is not written twice', async () => {
    const n = await edge();
    const { group, node } = n.options;
    const topic = deviceTopic(group, 'DDATA', node, 'd2');
    const payload = n.dataPayload('d2');
    await n.raw(topic, payload);
    await n.raw(topic, payload, { dup: true });
    await n.data('d2');
    const entries = await entriesOf(gw.keys, n.deviceId('d2'), 9);
    await new Promise((r) => setTimeout(r, 300));
    expect(ofDevice(await readAllTelemetry(redis.client, gw.keys), n.deviceId('d2'))).toHaveLength(9);
    expect(entries.map((e) => (e.payload as { seq: number }).seq)).toEqual([2, 2, 2, 3, 3, 3, 4, 4, 4]);
    expect(n.rebirths).toBe(0);
  });
});
