/**
 * The agent process against a real local Redis Cluster: its entries land in
 * its partition (which lives on whichever master owns the slot), in order.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import { startAgentProcess } from '../harness/agent-process.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisClusterHandle, startRedisCluster } from '../harness/redis-cluster.js';
import { readStream, waitFor } from '../harness/streams.js';

let cluster: RedisClusterHandle;
beforeAll(async () => {
  cluster = await startRedisCluster();
});
afterAll(async () => {
  await cluster.destroy();
});

it('publishes into its partition on a cluster, in sequence order, across several devices', async () => {
  const prefix = randomPrefix();
  const keys = new Keys(prefix, 8);
  const devices = ['pi-a', 'pi-b', 'pi-c'];
  const agents = devices.map((id) =>
    startAgentProcess({
      'device.id': id,
      'device.dataDir': mkdtempSync(join(tmpdir(), 'agent-cl-')),
      'redis.url': cluster.url,
      'redis.cluster': true,
      'redis.clusterNodes': cluster.seeds.slice(1).join(','),
      'redis.keyPrefix': prefix,
      'redis.partitions': 8,
      sensors: 'constant,temperature',
      'sensors.constant.interval': 10,
      'sensors.temperature.interval': 50,
    }),
  );
  const client = cluster.client();
  for (const id of devices) {
    const stream = keys.telemetryStreamFor(id);
    await waitFor(
      async () => (await readStream(client, stream)).filter((e) => e.deviceId === id).length >= 50,
      20_000,
      `50 entries of ${id}`,
    );
  }
  for (const a of agents) expect(await a.kill('SIGTERM')).toBe(0);
  for (const [i, id] of devices.entries()) {
    const mine = (await readStream(client, keys.telemetryStreamFor(id))).filter((e) => e.deviceId === id);
    const warnings = agents[i]!.logs().filter((l) => Number(l.level) >= 40);
    expect(
      mine.map((e) => e.seq),
      JSON.stringify(warnings),
    ).toEqual(mine.map((_, i) => i + 1));
    expect(new Set(mine.map((e) => e.type))).toEqual(new Set(['constant', 'temperature']));
  }
  client.disconnect();
});
