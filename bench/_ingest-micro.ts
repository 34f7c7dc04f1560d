/**
 * Micro-benchmark of the gateway's ingest path without sockets or Redis:
 * Ingestor.handle -> encodeEnvelope -> the producer's queue -> encodeBatch,
 * for drone GPS payloads as the firmware-sim's MQTT devices send them, and
 * the acknowledgement of every entry (onAcked). Prints ns per message.
 * `npx tsx bench/_ingest-micro.ts [messages]`
 */
import { systemClock } from '#shared/clock.js';
import type { EncodedEnvelope } from '#shared/envelope.js';
import { silentLogger } from '#shared/log.js';
import { createRegistry } from '#shared/metrics.js';
import { encodeBatch, type TelemetryProducer } from '#shared/telemetry/producer.js';
import { TopicAcl } from '../gateway/auth.js';
import { createIngestMetrics, Ingestor } from '../gateway/ingest.js';
import { TopicTemplate } from '../gateway/mapping.js';
import type { RecordWriter } from '../gateway/records.js';
import type { GatewaySequencer } from '../gateway/sequencer.js';

const N = Number(process.argv[2] ?? 500_000);
const DEVICES = 1000;
const BATCH = 500;
let queue: EncodedEnvelope[] = [];
let batchBytes = 0;
let ingestor: Ingestor;
const producer = {
  offer(e: EncodedEnvelope) {
    queue.push(e);
    if (queue.length >= BATCH) {
      const q = queue;
      queue = [];
      batchBytes += encodeBatch(q).length;
      ingestor.onAcked(q, { appended: q.length, duplicates: 0, forgotten: 0 });
    }
    return true;
  },
} as unknown as TelemetryProducer;
const templates = {
  telemetry: new TopicTemplate('devices/{deviceId}/telemetry/{type}', 't'),
  commands: new TopicTemplate('devices/{deviceId}/commands', 'c'),
  results: new TopicTemplate('devices/{deviceId}/results', 'r'),
  status: new TopicTemplate('devices/{deviceId}/status', 's'),
};
ingestor = new Ingestor(
  { maxPayloadBytes: 8192, defaultType: 'reading' },
  {
    producer,
    sequencer: {} as GatewaySequencer,
    records: {} as RecordWriter,
    templates,
    acl: new TopicAcl('devices/{deviceId}/telemetry/{type}'),
    metrics: createIngestMetrics(createRegistry({})),
    clock: systemClock,
    logger: silentLogger(),
  },
);
const acl = new TopicAcl('devices/{deviceId}/telemetry/{type}');
const topics = Array.from({ length: DEVICES }, (_, i) => `devices/d-m-${i}/telemetry/gps`);
const ids = Array.from({ length: DEVICES }, (_, i) => `d-m-${i}`);
const payloads = Array.from({ length: 64 }, (_, i) =>
  Buffer.from(
    JSON.stringify({
      seq: 1765000000000 + i,
      time: 1765000000123 + i,
      lat: 52.520008 + i * 1e-6,
      lon: 13.404954 - i * 1e-6,
      alt: 80.4,
      spd: 12.35,
      hdg: 271.3,
      ph: 'outbound',
    }),
  ),
);
let acked = 0;
const done = () => {
  acked++;
};
function round(n: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const d = i % DEVICES;
    const topic = topics[d]!;
    ingestor.handle({ topic, payload: payloads[i & 63]!, identity: ids[d] }, () => {
      // What the broker does in done: its ACL check, then the PUBACK.
      if (!acl.allows(ids[d]!, topic)) throw new Error('refused');
      done();
    });
  }
  return Number(process.hrtime.bigint() - t0) / n;
}
round(100_000); // warm-up
const results = [round(N), round(N), round(N)];
process.stdout.write(
  `ingest path: ${results.map((r) => r.toFixed(0)).join(' / ')} ns per message (3 rounds of ${N}), acked ${acked}, batch bytes ${batchBytes}\n`,
);
