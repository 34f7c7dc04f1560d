/**
 * The gateway's lifecycle and its bounded memory:
 * - stop: publishes that arrive once the gateway is stopping (on a socket, or
 *   as a sequence reservation answered after the producer closed) are dropped
 *   unacknowledged and never throw ("producer is closed"); a publish held
 *   when stop begins is still acknowledged on its open connection;
 * - presence events nobody waits for (connects, disconnects) are bounded
 *   while Redis does not take them: the excess is dropped and counted;
 * - a device's sequence block is forgotten when its last connection ends,
 *   and the sequencer keeps at most maxDevices blocks.
 */
import mqtt from 'mqtt';
import { expect, it } from 'vitest';
import { systemClock } from '#shared/clock.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRegistry } from '#shared/metrics.js';
import { RecordWriter } from '../../gateway/records.js';
import { GatewaySequencer } from '../../gateway/sequencer.js';
import { startPrefixedGateway } from '../harness/gateway.js';
import { randomPrefix } from '../harness/prefix.js';
import { useLocalRedis } from '../harness/redis-server.js';
import { readAllTelemetry, waitFor } from '../harness/streams.js';

const local = useLocalRedis();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('drops publishes that arrive while stopping, unacknowledged, and never throws', async () => {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);
  process.on('unhandledRejection', onRejection);
  try {
    const gw = await startPrefixedGateway(local.server.url, { 'gateway.shutdownTimeout': 10_000 });
    const device = await mqtt.connectAsync(gw.url, { clientId: 'stop-1', reconnectPeriod: 0 });
    // Held when stop begins: Redis takes no writes for a while, so the flush waits for it.
    await local.client.call('CLIENT', 'PAUSE', '1500', 'WRITE');
    const held = device.publishAsync('devices/stop-1/telemetry/t', JSON.stringify({ seq: 1, v: 1 }), {
      qos: 1,
    });
    await sleep(200);
    const late: string[] = [];
    const producer = gw.gateway.producer;
    const close = producer.close.bind(producer);
    producer.close = async (timeoutMs: number) => {
      const left = await close(timeoutMs);
      // After the producer closed: one with its own seq, one waiting for a gateway-assigned one.
      const ingestor = gw.gateway.ingestor;
      ingestor.handle(
        { topic: 'devices/late/telemetry/t', payload: Buffer.from('{"seq":5,"v":1}'), identity: undefined },
        () => late.push('seq'),
      );
      ingestor.handle(
        { topic: 'devices/late/telemetry/t', payload: Buffer.from('21.5'), identity: undefined },
        () => late.push('assigned'),
      );
      return left;
    };
    await gw.stop();
    // The held publish was acknowledged: its connection stayed open through the flush.
    await held;
    await device.endAsync(true);
    await sleep(500);
    expect(late).toEqual([]);
    expect(rejections).toEqual([]);
    const entries = await readAllTelemetry(local.client, gw.keys);
    expect(entries.map((e) => `${e.deviceId}/${e.seq}`)).toEqual(['stop-1/1']);
  } finally {
    process.off('unhandledRejection', onRejection);
  }
});

it('bounds presence events nobody waits for while Redis does not take them, and counts the dropped', async () => {
  const keys = new Keys(randomPrefix(), 4);
  const registry = createRegistry({});
  const writer = new RecordWriter(
    local.client,
    keys,
    'gw-test',
    { rejectedMaxLen: 0, presenceMaxLen: 0, maxPendingEvents: 5 },
    systemClock,
    silentLogger(),
    registry,
  );
  await local.client.call('CLIENT', 'PAUSE', '1000', 'WRITE');
  for (let i = 0; i < 20; i++) writer.presence(`storm-${i}`, i % 2 ? 'disconnected' : 'connected', undefined);
  expect(writer.pending).toBe(5);
  const metrics = await registry.metrics();
  expect(metrics).toMatch(/gateway_presence_dropped_total\S* 15/);
  await waitFor(async () => writer.pending === 0, 15_000, 'pending events written');
  expect(await local.client.xlen(keys.presence())).toBe(5);
  // Room again: new events are written.
  writer.presence('storm-after', 'connected', undefined);
  await waitFor(async () => (await local.client.xlen(keys.presence())) === 6, 10_000, 'written again');
  writer.close();
});

it("forgets a device's sequence block when its last connection ends, and keeps at most maxDevices", async () => {
  const gw = await startPrefixedGateway(local.server.url);
  try {
    const device = await mqtt.connectAsync(gw.url, { clientId: 'seq-1', reconnectPeriod: 0 });
    // No seq in the payload: the gateway assigns one from a reserved block.
    await device.publishAsync('devices/seq-1/telemetry/t', '21.5', { qos: 1 });
    expect(gw.gateway.sequencer.size).toBe(1);
    await device.endAsync();
    await waitFor(async () => gw.gateway.sequencer.size === 0, 10_000, 'block forgotten');
  } finally {
    await gw.stop();
  }
  const keys = new Keys(randomPrefix(), 4);
  const sequencer = new GatewaySequencer(local.client, keys, 10, systemClock, silentLogger(), 2);
  const seqs: number[] = [];
  for (const d of ['a', 'b', 'c', 'a'])
    seqs.push(await new Promise<number>((resolve) => sequencer.assign(d, resolve)));
  expect(sequencer.size).toBe(2);
  // "a" was evicted for "c": its next number comes from a new block (a gap, never a repeat).
  expect(seqs).toEqual([1, 1, 1, 11]);
  sequencer.close();
});
