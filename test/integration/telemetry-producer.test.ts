/**
 * The telemetry promise (docs/guarantees.md §1) on a real standalone
 * Redis and a real local Redis Cluster: entries land in their partition with
 * their fields, per-device order holds, and retried or replayed batches never
 * create a second entry.
 */
import { expect, it } from 'vitest';
import type { EncodedEnvelope } from '#shared/envelope.js';
import { encodeEnvelope } from '#shared/envelope.js';
import { useProducers } from '../harness/producer.js';
import { ALL_SERVERS } from '../harness/server-kind.js';
import { readAllTelemetry, readStream, seqsByDevice, waitFor } from '../harness/streams.js';
import { forEachTarget } from '../harness/targets.js';

function entry(deviceId: string, seq: number, payload: number | object = { v: seq }): EncodedEnvelope {
  return encodeEnvelope({ deviceId, seq, time: 1_700_000_000_000 + seq, type: 'temperature', payload });
}

forEachTarget(
  'telemetry producer',
  (target) => {
    const open = useProducers(target);

    it('puts each entry in its device partition with every envelope field', async () => {
      const { keys, producer } = await open();
      const e = entry('dev-a', 1, { c: 21.5 });
      expect(producer.offer(e)).toBe(true);
      await producer.flush();
      const stream = keys.telemetryStreamFor('dev-a');
      const stored = await readStream(target().client, stream);
      expect(stored).toHaveLength(1);
      expect(stored[0]).toMatchObject({
        deviceId: 'dev-a',
        seq: 1,
        time: e.time,
        type: 'temperature',
        version: 1,
        payload: { c: 21.5 },
      });
      const others = keys.allTelemetryStreams().filter((s) => s !== stream);
      for (const s of others) expect(await target().client.xlen(s)).toBe(0);
    });

    it('keeps per-device order across many devices sharing partitions', async () => {
      const { keys, producer } = await open({ batchMaxEntries: 50, maxInFlightBatches: 8 });
      const devices = Array.from({ length: 40 }, (_, i) => `dev-${i}`);
      for (let seq = 1; seq <= 50; seq++)
        for (const d of devices) expect(producer.offer(entry(d, seq))).toBe(true);
      await producer.flush();
      const entries = await readAllTelemetry(target().client, keys);
      expect(entries).toHaveLength(2000);
      for (const e of entries) expect(e.stream).toBe(keys.telemetryStreamFor(e.deviceId));
      const byDevice = seqsByDevice(entries);
      expect(byDevice.size).toBe(40);
      for (const seqs of byDevice.values()) expect(seqs).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    });

    it('a batch sent twice (lost reply, retry) leaves one entry per sequence number', async () => {
      const { keys, producer } = await open();
      const batch = Array.from({ length: 30 }, (_, i) => entry('dev-retry', i + 1));
      for (const e of batch) producer.offer(e);
      await producer.flush();
      for (const e of batch) producer.offer(e); // the retry of a batch whose reply was lost
      await producer.flush();
      const stored = await readStream(target().client, keys.telemetryStreamFor('dev-retry'));
      expect(stored.map((e) => e.seq)).toEqual(batch.map((e) => e.seq));
      expect(producer.totals).toMatchObject({ appended: 30, duplicates: 30 });
    });

    it('accepts sequence numbers out of order (a replayed backlog beside live data) exactly once', async () => {
      const { keys, producer } = await open({ batchMaxEntries: 7 });
      const order = [
        ...Array.from({ length: 10 }, (_, i) => i + 1), // live before the outage
        ...Array.from({ length: 20 }, (_, i) => i + 41), // live after it
        45,
        60, // duplicates above the mark while the gap is open (caught by the ranges)
        ...Array.from({ length: 30 }, (_, i) => i + 11), // the backlog, replayed late
        5,
        45,
        60,
        11, // stray duplicates
      ];
      for (const seq of order) producer.offer(entry('dev-ooo', seq));
      await producer.flush();
      const seqs = (await readStream(target().client, keys.telemetryStreamFor('dev-ooo'))).map((e) => e.seq);
      expect(seqs).toHaveLength(60);
      expect(new Set(seqs).size).toBe(60);
      expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      expect(producer.totals.duplicates).toBe(6);
      // Once the gap is filled the state collapses to a single high-water mark.
      const state = await target().client.hget(
        keys.telemetrySeqState(keys.partitionOf('dev-ooo')),
        'dev-ooo',
      );
      expect(state).toBe('60');
    });

    it('raw mode (idempotent off) appends every entry it is given, duplicates included', async () => {
      const { keys, producer } = await open({ idempotent: false });
      for (const seq of [1, 2, 3, 2]) producer.offer(entry('dev-raw', seq));
      await producer.flush();
      const stored = await readStream(target().client, keys.telemetryStreamFor('dev-raw'));
      expect(stored.map((e) => e.seq)).toEqual([1, 2, 3, 2]);
      expect(stored[0]).toMatchObject({ deviceId: 'dev-raw', type: 'temperature', payload: { v: 1 } });
      expect(producer.totals).toMatchObject({ appended: 4, duplicates: 0 });
    });

    it('a linger timeout flushes a partial batch; a full batch goes out at once', async () => {
      const { keys, producer } = await open({ batchMaxEntries: 10, lingerMs: 2000 });
      const stream = keys.telemetryStreamFor('dev-linger');
      for (let seq = 1; seq <= 3; seq++) producer.offer(entry('dev-linger', seq));
      await new Promise((r) => setTimeout(r, 300));
      expect(await target().client.xlen(stream)).toBe(0); // still lingering
      await waitFor(async () => (await target().client.xlen(stream)) === 3, 5000, 'linger flush');

      const started = Date.now();
      for (let seq = 4; seq <= 13; seq++) producer.offer(entry('dev-linger', seq));
      await waitFor(async () => (await target().client.xlen(stream)) === 13, 2000, 'full batch');
      expect(Date.now() - started).toBeLessThan(1500); // did not wait for the 2 s linger
    });
  },
  ALL_SERVERS,
);
