/**
 * The MQTT load generator shared by the gateway benchmark and its profiling
 * tool: QoS 1 publishers with a window of publishes in flight each, ~120-byte
 * payloads carrying per-device sequence numbers.
 */
import type { MqttClient } from 'mqtt';

/** Per-device sequence numbers, contiguous across the phases of a run (as a real device's are). */
const sequences = new Map<string, number>();
export function nextSeq(device: string): number {
  const n = (sequences.get(device) ?? 0) + 1;
  sequences.set(device, n);
  return n;
}

/** A ~120-byte JSON telemetry payload with its sequence number. */
export function payload(seq: number): string {
  const base = JSON.stringify({ seq, v: 21.5, t: Date.now(), pad: '' });
  return JSON.stringify({ seq, v: 21.5, t: Date.now(), pad: 'x'.repeat(Math.max(0, 120 - base.length)) });
}

/**
 * Publishes as fast as the PUBACKs allow for `ms`, `window` publishes in flight
 * per client (client i is device `<prefix>-<i>`); returns the acknowledged count.
 */
export async function saturate(
  clients: MqttClient[],
  prefix: string,
  ms: number,
  window: number,
): Promise<number> {
  let acked = 0;
  let running = true;
  const pump = (i: number) => {
    if (!running) return;
    const device = `${prefix}-${i}`;
    clients[i]!.publish(`devices/${device}/telemetry/load`, payload(nextSeq(device)), { qos: 1 }, (err) => {
      if (!err) acked++;
      pump(i);
    });
  };
  for (let i = 0; i < clients.length; i++) for (let w = 0; w < window; w++) pump(i);
  await new Promise((r) => setTimeout(r, ms));
  running = false;
  return acked;
}
