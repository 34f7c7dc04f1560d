/**
 * Bridge mode against a real mosquitto: the gateway subscribes with a shared
 * subscription over several persistent-session connections, acknowledges
 * after the append, and picks up what devices published while it was down.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import { startGateway } from '../harness/gateway.js';
import { useMosquitto } from '../harness/mosquitto.js';
import { randomPrefix } from '../harness/prefix.js';
import { useLocalRedis } from '../harness/redis-server.js';
import { readAllTelemetry, waitFor } from '../harness/streams.js';

const run = promisify(execFile);

const redis = useLocalRedis();
const mosquitto = useMosquitto();

it('bridges devices of a mosquitto into the streams, with persistent sessions across a gateway restart', async () => {
  const prefix = randomPrefix();
  const keys = new Keys(prefix, 4);
  const options = {
    'gateway.mode': 'bridge',
    'gateway.id': `bridge-${prefix}`,
    'bridge.url': mosquitto.url,
    'bridge.group': prefix,
    'bridge.connections': 3,
    'redis.url': redis.server.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
  };
  let gw = await startGateway(options);
  const devices = await Promise.all(
    ['br-1', 'br-2', 'br-3'].map((id) =>
      mqtt.connectAsync(mosquitto.url, { clientId: id, reconnectPeriod: 0 }),
    ),
  );
  try {
    const publishAll = (from: number, to: number) =>
      Promise.all(
        devices.map(async (d, i) => {
          for (let seq = from; seq <= to; seq++)
            await d.publishAsync(`devices/br-${i + 1}/telemetry/t`, JSON.stringify({ seq, v: seq }), {
              qos: 1,
            });
        }),
      );
    await publishAll(1, 50);
    await run('mosquitto_pub', [
      '-p',
      String(mosquitto.port),
      '-q',
      '1',
      '-t',
      'devices/br-pub/telemetry/battery',
      '-m',
      '77',
    ]);
    await waitFor(
      async () => (await readAllTelemetry(redis.client, keys)).length === 151,
      20_000,
      '151 entries',
    );

    // The gateway goes away; devices keep publishing into mosquitto, which holds them for the persistent sessions.
    await gw.stop();
    await publishAll(51, 80);
    gw = await startGateway(options);
    const stored = await waitFor(
      async () => {
        const s = await readAllTelemetry(redis.client, keys);
        return s.length >= 241 && s;
      },
      20_000,
      '241 entries',
    );
    for (let i = 1; i <= 3; i++) {
      const seqs = stored.filter((e) => e.deviceId === `br-${i}`).map((e) => e.seq);
      expect(seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: 80 }, (_, k) => k + 1));
    }
    expect(stored.find((e) => e.deviceId === 'br-pub')).toMatchObject({
      type: 'battery',
      payload: 77,
      seq: 1,
    });
    // Garbage reaches the rejected stream through the bridge too.
    await devices[0]!.publishAsync('devices/br-1/telemetry/t', 'not json', { qos: 1 });
    await waitFor(async () => (await redis.client.xlen(keys.rejected())) === 1, 10_000, 'a rejected entry');
  } finally {
    await Promise.all(devices.map((d) => d.endAsync(true)));
    await gw.stop();
  }
});
