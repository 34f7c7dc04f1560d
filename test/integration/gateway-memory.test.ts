/**
 * docs/guarantees.md §6, as memory: a gateway flooded by devices while Redis
 * refuses writes (CLIENT PAUSE WRITE) applies back-pressure to the devices'
 * sockets instead of growing. Its resident set (VmRSS of the gateway child
 * process, sampled) stays under a stated bound above its warm level, the
 * devices are slowed (their sockets stop draining), and once Redis is back
 * every publish they wrote is stored, once.
 *
 * The flood is QoS 0 so that nothing but the gateway's reading limits it: a
 * device writes its next publish as soon as its socket takes it, with no
 * window of its own.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { expect, it } from 'vitest';
import { Keys } from '#shared/keys.js';
import { startGatewayProcessReady } from '../harness/gateway.js';
import { freePort } from '../harness/ports.js';
import { randomPrefix } from '../harness/prefix.js';
import { useLocalRedis } from '../harness/redis-server.js';
import { countAllTelemetry, waitFor } from '../harness/streams.js';

const local = useLocalRedis();

const DEVICES = 40;
const PAYLOAD_PAD = 'x'.repeat(1000);
const PAUSE_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/**
 * The stated bound: growth of the gateway's RSS over its idle level, through
 * the flood and the pause. aedes reads no more from a connection while a
 * publish of its last read is pending (the ingestor's `done`), so the gateway
 * holds at most one socket read per connection plus what the producer holds
 * (producer.maxBufferedEntries); the rest waits in the kernel's socket
 * buffers and the devices. Measured: about 32 MB. With `done` called before
 * the append (no back-pressure) the same run grew by 1,300 MB.
 */
const MAX_GROWTH_MB = 192;

/** Resident set of a process in MB, from /proc (Linux). */
function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.replace(/\D+/g, '') ?? 0) / 1024;
}

/** Publishes QoS 0 as fast as its socket drains: only back-pressure from the gateway slows it. */
class Flooder {
  written = 0;
  private running = true;
  private stopped: (() => void) | undefined;

  constructor(
    readonly id: string,
    readonly client: MqttClient,
  ) {}

  start(): void {
    this.pump();
  }

  private pump(): void {
    if (!this.running) {
      this.stopped?.();
      return;
    }
    const seq = this.written + 1;
    this.client.publish(
      `devices/${this.id}/telemetry/load`,
      JSON.stringify({ seq, v: seq, pad: PAYLOAD_PAD }),
      { qos: 0 },
      (err) => {
        if (err) return;
        this.written = seq;
        const stream = this.client.stream;
        // Wait for the socket to drain: the device's own memory stays bounded too.
        if (stream.writableNeedDrain) stream.once('drain', () => this.pump());
        else setImmediate(() => this.pump());
      },
    );
  }

  /** Stops after the publish being written. */
  stop(): Promise<void> {
    this.running = false;
    return new Promise((resolve) => {
      this.stopped = resolve;
    });
  }
}

it(`floods the gateway while Redis is paused: its RSS grows by less than ${MAX_GROWTH_MB} MB, devices are slowed, nothing written is lost`, async () => {
  const prefix = randomPrefix();
  const keys = new Keys(prefix, 4);
  const port = await freePort();
  const gw = await startGatewayProcessReady({
    'gateway.mode': 'broker',
    'gateway.id': 'gw-memory',
    'broker.port': port,
    'redis.url': local.server.url,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    'producer.appendTimeout': 30_000,
    'log.level': 'info',
  });
  const pid = gw.child.pid!;
  const devices = await Promise.all(
    Array.from({ length: DEVICES }, async (_, i) => {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
        clientId: `flood-${i}`,
        reconnectPeriod: 0,
        keepalive: 0, // a paused gateway must not be mistaken for a dead one
      });
      return new Flooder(`flood-${i}`, c);
    }),
  );
  const written = () => devices.reduce((n, d) => n + d.written, 0);
  const idle = rssMb(pid);
  let peak = idle;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMb(pid));
  }, 100);
  try {
    // The flood flows into Redis first (devices known, heap at its working size), then Redis stops taking writes.
    for (const d of devices) d.start();
    await waitFor(async () => (await countAllTelemetry(local.client, keys)) >= 2_000, 30_000, 'flowing');
    await local.client.client('PAUSE', PAUSE_MS, 'WRITE');
    const pausedAt = Date.now();
    const writtenAtPause = written();
    // The sockets fill at the machine's pace (slower on a loaded one): wait, within the pause, for
    // the devices' writes to stall. Without back-pressure they never do (the gateway reads on).
    let before = writtenAtPause;
    let stalled: number | undefined;
    while (Date.now() - pausedAt < PAUSE_MS - 4_000) {
      await sleep(1_000);
      const now = written();
      if (now - before < 200) {
        stalled = now;
        break;
      }
      before = now;
    }
    await sleep(2_000);
    const writtenLate = written();
    console.log(
      `gateway RSS idle ${idle.toFixed(0)} MB, peak ${peak.toFixed(0)} MB; publishes written during the pause: ` +
        `${writtenAtPause}..${stalled ?? 'never stalled'}..${writtenLate}`,
    );
    expect(peak - idle).toBeLessThan(MAX_GROWTH_MB);
    // Back-pressure reached the devices: their writes stalled, and for 2 s more their sockets took (almost) nothing.
    expect(stalled, 'the devices were never slowed').toBeDefined();
    expect(writtenLate - stalled!).toBeLessThan(2_000);
    await Promise.all(devices.map((d) => d.stop()));
    const total = written();
    // Everything the devices wrote reaches Redis, once (QoS 0 over a live connection: TCP loses nothing).
    await waitFor(
      async () => (await countAllTelemetry(local.client, keys)) >= total,
      60_000,
      'all written stored',
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(await countAllTelemetry(local.client, keys)).toBe(total);
  } finally {
    clearInterval(sampler);
    await Promise.all(devices.map((d) => d.client.endAsync(true)));
    await gw.kill('SIGTERM');
  }
}, 180_000);
