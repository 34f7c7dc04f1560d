/**
 * The device side of the telemetry path: turns a reading into a validated
 * envelope with the next sequence number and hands it to the producer. What
 * the producer refuses (buffer full) is counted, never silently lost.
 */
import { type EncodedEnvelope, encodeEnvelope, type Payload, SCHEMA_VERSION } from '#shared/envelope.js';
import type { Counter } from '#shared/metrics.js';
import type { TelemetryProducer } from '#shared/telemetry/producer.js';

export interface SequenceSource {
  next(): number;
}

/** Where entries the producer refuses go (the disk journal, or a counter of drops). */
export type OverflowHandler = (entry: EncodedEnvelope) => void;

export class DeviceTelemetry {
  constructor(
    readonly deviceId: string,
    private readonly sequence: SequenceSource,
    private readonly producer: TelemetryProducer,
    private readonly onOverflow: OverflowHandler,
    private readonly sampleCounter?: Counter<'type'>,
  ) {}

  /** Publishes one reading; returns the envelope it became. */
  publish(type: string, payload: Payload, time: number): EncodedEnvelope {
    const entry = encodeEnvelope({
      deviceId: this.deviceId,
      seq: this.sequence.next(),
      time,
      type,
      version: SCHEMA_VERSION,
      payload,
    });
    this.sampleCounter?.inc({ type });
    if (!this.producer.offer(entry)) this.onOverflow(entry);
    return entry;
  }
}
