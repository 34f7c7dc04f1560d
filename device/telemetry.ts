/**
 * The device side of the telemetry path: turns a reading into a validated
 * envelope with the next sequence number and hands it to the producer. What
 * the producer refuses (buffer full) is counted, never silently lost.
 */
import {
  type EncodedEnvelope,
  encodeEnvelope,
  encodeEnvelopeText,
  type Payload,
  SCHEMA_VERSION,
} from '#shared/envelope.js';
import type { Counter } from '#shared/metrics.js';

export interface SequenceSource {
  next(): number;
}

/** Takes entries: the live producer, or store-and-forward (device/journal/). Returns false when full. */
export interface TelemetrySink {
  offer(entry: EncodedEnvelope): boolean;
}

/** Where entries the sink refuses go (a counter of drops). */
export type OverflowHandler = (entry: EncodedEnvelope) => void;

export class DeviceTelemetry {
  constructor(
    readonly deviceId: string,
    private readonly sequence: SequenceSource,
    private readonly producer: TelemetrySink,
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
    return this.hand(entry);
  }

  /**
   * As publish, for a sensor that writes its reading as the JSON text of an
   * object (the fleet simulator's signal models): checked as publish checks it,
   * nothing serialised again.
   */
  publishText(type: string, payloadText: string, time: number): EncodedEnvelope {
    const entry = encodeEnvelopeText({
      deviceId: this.deviceId,
      seq: this.sequence.next(),
      time,
      type,
      payloadText,
    });
    return this.hand(entry);
  }

  /** Counts the reading and offers it to the producer; a refusal goes to the overflow handler. */
  private hand(entry: EncodedEnvelope): EncodedEnvelope {
    this.sampleCounter?.inc({ type: entry.type });
    if (!this.producer.offer(entry)) this.onOverflow(entry);
    return entry;
  }
}
