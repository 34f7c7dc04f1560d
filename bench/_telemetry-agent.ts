/**
 * Child process of the telemetry benchmark: the agent's publish path
 * (envelope encoding + batched producer) pushing N entries into Redis as fast
 * as back-pressure allows. Prints one JSON line: rate and RSS.
 *
 * argv: redisUrl count idempotent(0|1) batch inFlight payloadBytes
 */
import { encodeEnvelope } from '#shared/envelope.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRedis, waitReady } from '#shared/redis/connect.js';
import { TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import { baseRedisConfig } from '../test/harness/redis-config.js';

const [url = '', countText = '0', idem = '1', batchText = '100', inFlightText = '8', payloadText = '120'] =
  process.argv.slice(2);
const count = Number(countText);
const batch = Number(batchText);

async function main(): Promise<void> {
  const client = createRedis(baseRedisConfig(url), { failFast: true });
  await waitReady(client, url, 5000);
  const keys = new Keys(`bench${idem}`, 16);
  const producer = new TelemetryProducer(
    client,
    keys,
    {
      ...producerOptions(),
      idempotent: idem === '1',
      batchMaxEntries: batch,
      maxInFlightBatches: Number(inFlightText),
      maxBufferedEntries: batch * Number(inFlightText) * 2,
      lingerMs: 1,
    },
    { logger: silentLogger() },
  );
  const payload = { x: 'a'.repeat(Math.max(0, Number(payloadText) - 8)) };
  // Warm-up: JIT and script cache.
  const warm = 20_000;
  let seq = 0;
  const publishUntil = async (n: number) => {
    while (seq < n) {
      const entry = encodeEnvelope({
        deviceId: 'bench-dev',
        seq: seq + 1,
        time: Date.now(),
        type: 'constant',
        payload,
      });
      if (producer.offer(entry)) seq++;
      else await producer.whenRoom();
    }
    await producer.flush();
  };
  await publishUntil(warm);
  const started = performance.now();
  await publishUntil(warm + count);
  const seconds = (performance.now() - started) / 1000;
  const rssMb = process.memoryUsage().rss / 2 ** 20;
  process.stdout.write(`${JSON.stringify({ perSecond: count / seconds, rssMb, totals: producer.totals })}\n`);
  await producer.close(1000);
  client.disconnect();
}

void main();
