/**
 * The latest-state projection on a real standalone Redis and a real Cluster:
 * whatever order entries arrive in, however often they are replayed or
 * redelivered, a device's state never goes back to an older reading.
 */
import { afterEach, expect, it } from 'vitest';
import { encodeEnvelope, envelopeFields } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRegistry } from '#shared/metrics.js';
import { createRedis, type RedisClient, waitReady } from '#shared/redis/connect.js';
import { type DeviceState, readDeviceState } from '#shared/state.js';
import { type ProjectionOptions, projectionOptions } from '../../gateway/projection/options.js';
import { ProjectionService } from '../../gateway/projection/service.js';
import { randomPrefix } from '../harness/prefix.js';
import { forEachTarget } from '../harness/targets.js';

forEachTarget('projection', (target) => {
  const clients: RedisClient[] = [];
  afterEach(() => {
    for (const c of clients.splice(0)) c.disconnect();
  });

  async function setup(overrides: Partial<ProjectionOptions> = {}) {
    const keys = new Keys(randomPrefix(), 4);
    const client = createRedis(target().config);
    clients.push(client);
    await waitReady(client, 'test', 10_000);
    const registry = createRegistry({}, false);
    const make = (o: Partial<ProjectionOptions> = {}, reg = createRegistry({}, false)) =>
      new ProjectionService(
        client,
        keys,
        { ...projectionOptions(), consumer: 'c1', ...overrides, ...o },
        { logger: silentLogger(), registry: reg },
      );
    const projection = make({}, registry);
    await projection.ensureGroups();
    const append = async (deviceId: string, seq: number, type: string, value: number) => {
      const e = encodeEnvelope({ deviceId, seq, time: 1_700_000_000_000 + seq, type, payload: { value } });
      await target().client.xadd(keys.telemetryStreamFor(deviceId), '*', ...envelopeFields(e));
    };
    return { keys, client, projection, registry, append, make };
  }

  const seqOf = (s: DeviceState | undefined, type: string) => s?.readings[type]?.seq ?? 0;

  it('keeps the newest reading per type by sequence number, under out-of-order and replayed entries', async () => {
    const { keys, client, projection, append } = await setup();
    for (const [seq, type] of [
      [5, 'temp'],
      [3, 'temp'],
      [7, 'hum'],
      [6, 'temp'],
      [4, 'temp'],
    ] as const)
      await append('dev-a', seq, type, seq * 10);
    await projection.drain();
    let state = await readDeviceState(client, keys, 'dev-a');
    expect(state?.readings.temp).toEqual({ seq: 6, time: 1_700_000_000_006, payload: { value: 60 } });
    expect(state?.readings.hum?.seq).toBe(7);
    expect(state?.seq).toBe(7);
    expect(state?.time).toBe(1_700_000_000_007);
    const seen = state!.seen;
    expect(seen).toBeGreaterThan(0);

    // Late duplicates of older readings, then a full replay of the stream from the start.
    await append('dev-a', 2, 'temp', 20);
    await append('dev-a', 5, 'temp', 50);
    await projection.drain();
    await target().client.xgroup('SETID', keys.telemetryStreamFor('dev-a'), 'projection', '0');
    await projection.drain();
    state = await readDeviceState(client, keys, 'dev-a');
    expect(state?.readings.temp).toEqual({ seq: 6, time: 1_700_000_000_006, payload: { value: 60 } });
    expect(state?.seq).toBe(7);
    expect(state!.seen).toBeGreaterThanOrEqual(seen);
  });

  it('never regresses, round by round, under shuffled, duplicated entries of many devices', async () => {
    const { keys, client, append, make } = await setup();
    const devices = ['d1', 'd2', 'd3', 'd4', 'd5', 'd6'];
    const types = ['temp', 'hum', 'gps'];
    const entries: Array<[string, number, string]> = [];
    for (const d of devices)
      for (let seq = 1; seq <= 30; seq++) entries.push([d, seq, types[seq % types.length]!]);
    // Shuffle (deterministic LCG) and add a quarter again as replays.
    let x = 42;
    const rnd = () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x / 2 ** 31;
    };
    const shuffled = [...entries, ...entries.filter(() => rnd() < 0.25)].sort(() => rnd() - 0.5);
    for (const [d, seq, type] of shuffled) await append(d, seq, type, seq);

    // Small batches: most comparisons happen in the script, not in one read.
    const projection = make({ batchSize: 3 });
    const best = new Map<string, number>();
    for (let round = 0; round < 1000; round++) {
      const n = await projection.runRound();
      for (const d of devices) {
        const state = await readDeviceState(client, keys, d);
        for (const t of types) {
          const k = `${d}/${t}`;
          const now = seqOf(state, t);
          expect(now).toBeGreaterThanOrEqual(best.get(k) ?? 0);
          best.set(k, now);
        }
      }
      if (n === 0) break;
    }
    for (const d of devices) {
      const state = await readDeviceState(client, keys, d);
      expect(state?.seq).toBe(30);
      for (const t of types) {
        const max = Math.max(...entries.filter(([dd, , tt]) => dd === d && tt === t).map(([, s]) => s));
        expect(state?.readings[t]).toMatchObject({ seq: max, payload: { value: max } });
      }
    }
  });

  it('folds in entries left pending by a crashed consumer (own restart, and claimed from another)', async () => {
    const { keys, client, append, make } = await setup({ claimIdle: 50 });
    await append('dev-p', 1, 'temp', 1);
    await append('dev-q', 1, 'temp', 1);
    const sp = keys.telemetryStreamFor('dev-p');
    const sq = keys.telemetryStreamFor('dev-q');
    // 'c1' read dev-p's entry and crashed; 'dead' read dev-q's and never came back.
    await target().client.xreadgroup('GROUP', 'projection', 'c1', 'COUNT', 10, 'STREAMS', sp, '>');
    await target().client.xreadgroup('GROUP', 'projection', 'dead', 'COUNT', 10, 'STREAMS', sq, '>');
    await new Promise((r) => setTimeout(r, 120));

    const restarted = make({ claimIdle: 50 });
    await restarted.drain();
    expect(seqOf(await readDeviceState(client, keys, 'dev-p'), 'temp')).toBe(1);
    expect(seqOf(await readDeviceState(client, keys, 'dev-q'), 'temp')).toBe(1);
    for (const s of new Set([sp, sq])) {
      const summary = (await target().client.xpending(s, 'projection')) as unknown[];
      expect(summary[0]).toBe(0);
    }
  });

  it('counts an entry it cannot decode, acknowledges it, and reports unhealthy', async () => {
    const { keys, client, projection, registry, append } = await setup();
    await target().client.xadd(keys.telemetryStream(0), '*', 'd', 'bad-one', 's', 'x');
    await append('dev-ok', 1, 'temp', 5);
    await projection.drain();
    expect(seqOf(await readDeviceState(client, keys, 'dev-ok'), 'temp')).toBe(1);
    const dropped = await registry.getSingleMetric('projection_dropped_total')?.get();
    expect(dropped?.values.find((v) => v.labels.reason === 'invalid')?.value).toBe(1);
    expect(projection.health().healthy).toBe(false);
    const summary = (await target().client.xpending(keys.telemetryStream(0), 'projection')) as unknown[];
    expect(summary[0]).toBe(0);
  });

  it("while it keeps up, folds a device's readings of one round interval with one write, and is fresh within it", async () => {
    const applied = async (interval: number) => {
      const { keys, client, make } = await setup();
      const registry = createRegistry({}, false);
      const projection = make({ interval, idle: 20 }, registry);
      await projection.start();
      try {
        // 20 readings, one every 15 ms (a 67 Hz sensor), while the projection runs.
        for (let seq = 1; seq <= 20; seq++) {
          await append(keys, seq);
          await new Promise((r) => setTimeout(r, 15));
        }
        const deadline = Date.now() + 5000;
        while (seqOf(await readDeviceState(client, keys, 'dev-p'), 'gps') < 20) {
          expect(Date.now(), 'the newest reading within a few intervals').toBeLessThan(deadline);
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await projection.stop();
      }
      const m = await registry.getSingleMetric('projection_applied_total')?.get();
      return m?.values[0]?.value ?? 0;
    };
    const append = async (keys: Keys, seq: number) => {
      const e = encodeEnvelope({
        deviceId: 'dev-p',
        seq,
        time: 1_700_000_000_000 + seq,
        type: 'gps',
        payload: { seq },
      });
      await target().client.xadd(keys.telemetryStreamFor('dev-p'), '*', ...envelopeFields(e));
    };
    // Paced at 400 ms, the 300 ms of readings take one or two rounds (plus one for a straggler)...
    expect(await applied(400)).toBeLessThanOrEqual(3);
    // ... back to back, nearly every reading is a write of its own.
    expect(await applied(0)).toBeGreaterThan(8);
  });
});
