/**
 * The latest-state view (docs/guarantees.md, "Latest state") as the append
 * script keeps it, on a real standalone server and a real Cluster: every entry
 * the producer appends is folded into its device's state hash in the same call,
 * newest by sequence number per reading type, so out-of-order, retried and
 * replayed entries never make it go back, and duplicates never overwrite it.
 */
import { expect, it } from 'vitest';
import { encodeEnvelope } from '#shared/envelope.js';
import { readDeviceState, readDeviceStates } from '#shared/state.js';
import type { ProducerOptions } from '#shared/telemetry/producer-options.js';
import { useProducers } from '../harness/producer.js';
import { ALL_SERVERS, REDIS_ONLY } from '../harness/server-kind.js';
import { readStream } from '../harness/streams.js';
import { forEachTarget } from '../harness/targets.js';

const T0 = 1_700_000_000_000;
const reading = (deviceId: string, seq: number, type: string, value: number) =>
  encodeEnvelope({ deviceId, seq, time: T0 + seq, type, payload: { value } });

/** A small deterministic generator, so a failing order can be replayed. */
function shuffled<T>(items: T[], seed: number): T[] {
  let s = seed;
  const next = () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

forEachTarget(
  'latest state folded in by the append',
  (target) => {
    const producers = useProducers(target);
    const open = async (overrides: Partial<ProducerOptions> = {}) => {
      const { keys, client, producer } = await producers({ lingerMs: 1, ...overrides });
      const send = async (entries: ReturnType<typeof reading>[]) => {
        for (const e of entries) expect(producer.offer(e)).toBe(true);
        await producer.flush();
      };
      return { keys, client, producer, send };
    };

    it('keeps the newest reading per type by sequence number; duplicates and replays never overwrite it', async () => {
      const { keys, client, send } = await open({ batchMaxEntries: 2 });
      await send([
        reading('dev-a', 5, 'temp', 50),
        reading('dev-a', 3, 'temp', 30),
        reading('dev-a', 7, 'hum', 70),
        reading('dev-a', 6, 'temp', 60),
        reading('dev-a', 4, 'temp', 40),
      ]);
      let state = await readDeviceState(client, keys, 'dev-a');
      expect(state?.readings.temp).toEqual({ seq: 6, time: T0 + 6, payload: { value: 60 } });
      expect(state?.readings.hum).toEqual({ seq: 7, time: T0 + 7, payload: { value: 70 } });
      expect(state).toMatchObject({ seq: 7, time: T0 + 7 });
      // "Last seen" is when Redis took the newest entry: the stream id of the last one appended.
      const stored = await readStream(target().client, keys.telemetryStreamFor('dev-a'));
      expect(state?.seen).toBe(Number(stored.at(-1)!.id.split('-')[0]));

      // A duplicate of seq 6 carrying another value (a retried publish, a replayed journal), and the
      // whole history again: refused by the append, so the state keeps what was appended first.
      await send([reading('dev-a', 6, 'temp', 999)]);
      await send([3, 4, 5, 6].map((seq) => reading('dev-a', seq, 'temp', seq * 10)));
      state = await readDeviceState(client, keys, 'dev-a');
      expect(state?.readings.temp).toEqual({ seq: 6, time: T0 + 6, payload: { value: 60 } });
      expect(state?.seq).toBe(7);

      await send([reading('dev-a', 8, 'temp', 80)]);
      state = await readDeviceState(client, keys, 'dev-a');
      expect(state?.readings.temp?.payload).toEqual({ value: 80 });
      expect(state?.readings.hum?.seq).toBe(7);
      expect(state?.seq).toBe(8);
      // The header lists each type once, however many readings of it were folded in.
      const header = await client.hget(keys.partitionState(keys.partitionOf('dev-a')), 'dev-a');
      expect(header?.split(' ').slice(3)).toEqual(['temp', 'hum']);
    });

    it('folds batches of many devices into the right hashes, never going back, under shuffled and duplicated entries', async () => {
      const { keys, client, send } = await open({ batchMaxEntries: 17, maxInFlightBatches: 4 });
      const devices = Array.from({ length: 30 }, (_, i) => `dev-${i}`);
      const all = devices.flatMap((d, i) =>
        Array.from({ length: 40 }, (_, s) => reading(d, s + 1, s % 3 ? 'gps' : 'battery', i * 1000 + s + 1)),
      );
      // Every entry once, shuffled, with a fifth of them sent again later.
      const order = shuffled(all, 7);
      const firstHalf = order.slice(0, order.length / 2);
      await send(firstHalf);
      const midway = new Map<string, number>();
      for (const d of devices) midway.set(d, (await readDeviceState(client, keys, d))?.seq ?? 0);
      await send([...order.slice(order.length / 2), ...shuffled(firstHalf, 11).slice(0, all.length / 5)]);

      for (const d of devices) {
        const state = await readDeviceState(client, keys, d);
        for (const type of ['gps', 'battery']) {
          const newest = all
            .filter((e) => e.deviceId === d && e.type === type)
            .sort((a, b) => b.seq - a.seq)[0]!;
          expect(state?.readings[type], `${d} ${type}`).toEqual({
            seq: newest.seq,
            time: newest.time,
            payload: JSON.parse(newest.payload),
          });
        }
        expect(state?.seq).toBe(40);
        expect(state!.seq).toBeGreaterThanOrEqual(midway.get(d)!);
      }
      // Read together, as the dashboard does (one HMGET per partition): each device's own state, in order.
      const together = await readDeviceStates(client, keys, devices);
      expect(together).toEqual(await Promise.all(devices.map((d) => readDeviceState(client, keys, d))));
    });

    it('raw mode (idempotent off) folds every entry too, newest by sequence number', async () => {
      const { keys, client, send } = await open({ idempotent: false });
      await send([
        reading('dev-r', 2, 'temp', 20),
        reading('dev-r', 1, 'temp', 10),
        reading('dev-x', 1, 'temp', 5),
      ]);
      expect((await readDeviceState(client, keys, 'dev-r'))?.readings.temp?.payload).toEqual({ value: 20 });
      expect((await readDeviceState(client, keys, 'dev-x'))?.readings.temp?.payload).toEqual({ value: 5 });
    });

    it('with producer.foldState=false keeps no state (the read-back projection is then what keeps it)', async () => {
      const { keys, client, send } = await open({ foldState: false });
      await send([reading('dev-n', 1, 'temp', 10)]);
      expect(await target().client.xlen(keys.telemetryStreamFor('dev-n'))).toBe(1);
      expect(await readDeviceState(client, keys, 'dev-n')).toBeUndefined();
    });

    it('in raw mode with producer.foldState=false appends every entry and keeps no state', async () => {
      const { keys, client, send } = await open({ foldState: false, idempotent: false });
      await send([reading('dev-q', 2, 'temp', 20), reading('dev-q', 1, 'temp', 10)]);
      expect(await target().client.xlen(keys.telemetryStreamFor('dev-q'))).toBe(2);
      expect(await readDeviceState(client, keys, 'dev-q')).toBeUndefined();
    });
  },
  ALL_SERVERS,
);

forEachTarget(
  'latest state of a large batch',
  (target) => {
    const open = useProducers(target);
    it('folds a batch of the largest size (producer.batchMaxEntries 10,000, as many devices) in one call', async () => {
      const { keys, client, producer } = await open(
        { batchMaxEntries: 10_000, maxBufferedEntries: 10_000, lingerMs: 50 },
        1,
      );
      const ids = Array.from({ length: 10_000 }, (_, i) => `big-${i}`);
      for (const id of ids) expect(producer.offer(reading(id, 1, 'temp', 1))).toBe(true);
      await producer.flush();
      expect(producer.totals).toMatchObject({ appended: 10_000, duplicates: 0 });
      const states = await readDeviceStates(client, keys, ids);
      expect(states.filter((s) => s?.readings.temp?.seq === 1)).toHaveLength(10_000);
    });
  },
  REDIS_ONLY,
);
