/**
 * The gateway's ingestion core, shared by broker and bridge mode: one MQTT
 * publish in, one `done` call out when it is safe to acknowledge it.
 *
 * `done` is called only when the publish's entry is in Redis at the
 * configured durability level (the producer's onAcked), or when its rejection
 * or presence record is. Callers acknowledge (PUBACK) in `done`, and read
 * nothing more from a connection while its publishes are pending, so a slow
 * Redis slows the devices instead of growing the gateway's memory: entries the
 * producer refuses (buffer full) wait here, bounded by the number of
 * connections times the packets of one socket read, and are offered again as
 * batches are acknowledged.
 *
 * Stopping (gateway.ts stop): stopIntake() first, so a publish that arrives
 * while the producer flushes is dropped unacknowledged (the device sends it
 * again, to this gateway restarted or another); detach() once the producer
 * is closed, so a late callback (a sequence reservation answered after the
 * close) drops its entry instead of offering it to a closed producer.
 */
import type { Clock } from '#shared/clock.js';
import {
  type EncodedEnvelope,
  type EnvelopeLimits,
  type Payload as EnvelopePayload,
  encodeEnvelope,
  encodeEnvelopeText,
} from '#shared/envelope.js';
import { ValidationError } from '#shared/errors.js';
import type { Logger } from '#shared/log.js';
import { Counter, type Registry } from '#shared/metrics.js';
import type { BatchOutcome, TelemetryProducer } from '#shared/telemetry/producer.js';
import type { TopicAcl } from './auth.js';
import {
  type DecodedReading,
  decodePayload,
  PayloadError,
  type TopicTemplate,
  validDeviceId,
} from './mapping.js';
import type { MappingSet } from './mappings/index.js';
import type { PresenceEvent, RecordWriter, RejectReason } from './records.js';
import type { GatewaySequencer } from './sequencer.js';

export interface IncomingPublish {
  topic: string;
  payload: Buffer;
  /** The authenticated device (broker mode); undefined in bridge mode, where the upstream broker enforces ACLs. */
  identity: string | undefined;
}

export type Done = () => void;

/** One telemetry entry a protocol handler asks for; it gets the device's next gateway sequence number. */
export interface SinkReading {
  time: number;
  type: string;
  payload: EnvelopePayload;
}

/**
 * What a protocol handler may do with a publish it took: append entries,
 * reject it with a reason, record presence. Every path ends in `done` once
 * its records are in Redis, as for native topics.
 */
export interface IngestSink {
  /** Appends the readings of one device in order, each with its next gateway sequence number; `done` after the last. */
  append(
    deviceId: string,
    readings: readonly SinkReading[],
    pub: IncomingPublish,
    label: string,
    done: Done,
  ): void;
  reject(
    reason: RejectReason,
    detail: string,
    pub: IncomingPublish,
    deviceId: string | undefined,
    done: Done,
    label?: string,
  ): void;
  presence(deviceId: string, event: PresenceEvent, payload: Buffer | undefined, done: Done): void;
  /** The device was heard from: its last-seen time, and command delivery learns of it. */
  seen(deviceId: string): void;
}

/** A callback to call `n` times: `done` runs on the last call (at once when `n` is 0). */
export function countdown(n: number, done: Done): Done {
  if (n === 0) {
    done();
    return () => {};
  }
  let left = n;
  return () => {
    if (--left === 0) done();
  };
}

/** A protocol that takes its own topics before the templates and mappings (Sparkplug B: gateway/sparkplug). */
export interface ProtocolHandler {
  claims(topic: string): boolean;
  handle(pub: IncomingPublish, sink: IngestSink, done: Done): void;
}

export interface Templates {
  telemetry: TopicTemplate;
  commands: TopicTemplate;
  results: TopicTemplate;
  status: TopicTemplate;
}

/** A command result published by a device; the command service takes it (see gateway/commands/intake.ts). */
export type ResultHandler = (deviceId: string, payload: Buffer, done: Done) => void;

export interface IngestMetrics {
  received: Counter;
  rejected: Counter<'reason'>;
  unauthorized: Counter;
}

export function createIngestMetrics(registry: Registry): IngestMetrics {
  const registers = [registry];
  return {
    received: new Counter({ name: 'gateway_publishes_total', help: 'MQTT publishes received', registers }),
    rejected: new Counter({
      name: 'gateway_rejected_total',
      help: 'Publishes written to the rejected stream, by reason',
      labelNames: ['reason'],
      registers,
    }),
    unauthorized: new Counter({
      name: 'gateway_unauthorized_total',
      help: 'Publishes and subscriptions refused by the topic ACL',
      registers,
    }),
  };
}

export interface IngestOptions {
  maxPayloadBytes: number;
  defaultType: string;
}

export interface IngestDeps {
  producer: TelemetryProducer;
  sequencer: GatewaySequencer;
  records: RecordWriter;
  templates: Templates;
  acl: TopicAcl;
  metrics: IngestMetrics;
  clock: Clock;
  logger: Logger;
  /** Vendor topic/payload mappings (option `mapping`): they take topics outside every device namespace. */
  mappings?: MappingSet;
  /** A protocol with topics of its own (Sparkplug B), asked before everything else. */
  protocol?: ProtocolHandler;
}

export class Ingestor {
  /** Entries offered to the producer, each with the acknowledgement it releases. */
  private readonly pendingAcks = new Map<EncodedEnvelope, Done>();
  /** Entries the producer refused (buffer full), waiting to be offered again, in order. */
  private waiting: Array<[EncodedEnvelope, Done]> = [];
  private resultHandler: ResultHandler | undefined;
  /** Device -> last time seen, flushed to the lastseen hash now and then. */
  readonly seen = new Map<string, number>();
  /** Devices seen since start (bounded by the fleet); `onDevice` hears of each once. */
  private readonly known = new Set<string>();
  onDevice: ((deviceId: string) => void) | undefined;
  /** False once stopping: new publishes are dropped, never acknowledged. */
  private intake = true;
  /** False once the producer is closed: nothing more is offered to it. */
  private attached = true;

  /** What the protocol handler is given (see IngestSink). */
  private readonly sink: IngestSink;
  private readonly limits: EnvelopeLimits;

  constructor(
    private readonly options: IngestOptions,
    private readonly deps: IngestDeps,
  ) {
    this.limits = { maxPayloadBytes: options.maxPayloadBytes };
    this.sink = {
      append: (deviceId, readings, pub, label, done) =>
        this.appendReadings(deviceId, readings, pub, label, done),
      reject: (reason, detail, pub, deviceId, done, label) => {
        if (reason === 'unauthorized') this.deps.metrics.unauthorized.inc();
        this.reject(reason, detail, pub, deviceId, done, label);
      },
      presence: (deviceId, event, payload, done) =>
        this.deps.records.presence(deviceId, event, payload, done),
      seen: (deviceId) => this.see(deviceId),
    };
  }

  /** Whether a protocol handler takes this topic (the broker routes such wills here, not to presence). */
  claims(topic: string): boolean {
    return this.deps.protocol?.claims(topic) ?? false;
  }

  /** Wire as the producer's onAcked hook. */
  onAcked(entries: readonly EncodedEnvelope[], _outcome: BatchOutcome): void {
    for (const e of entries) {
      const done = this.pendingAcks.get(e);
      if (done) {
        this.pendingAcks.delete(e);
        done();
      }
    }
    this.drainWaiting();
  }

  /** Stops taking publishes; what is pending still completes (its PUBACKs go out as the producer flushes). */
  stopIntake(): void {
    this.intake = false;
  }

  /** The producer is closed: entries still on their way to it are dropped, unacknowledged. */
  detach(): void {
    this.intake = false;
    this.attached = false;
    this.waiting = [];
  }

  /** The device's last connection ended: its sequence block may go. */
  forget(deviceId: string): void {
    this.deps.sequencer.forget(deviceId);
  }

  setResultHandler(handler: ResultHandler | undefined): void {
    this.resultHandler = handler;
  }

  /** Publishes not yet acknowledgeable: offered to the producer or waiting for room. */
  get pending(): number {
    return this.pendingAcks.size + this.waiting.length;
  }

  handle(pub: IncomingPublish, done: Done): void {
    // Stopping: not acknowledged, so not promised; the device sends it again.
    if (!this.intake) return;
    this.deps.metrics.received.inc();
    const { templates, acl } = this.deps;
    const { topic, payload, identity } = pub;
    // Hook: a protocol with topics of its own (Sparkplug B) takes them before the templates.
    if (this.deps.protocol?.claims(topic)) {
      this.deps.protocol.handle(pub, this.sink, done);
      return;
    }

    const telemetry = templates.telemetry.match(topic);
    const status = telemetry ? undefined : templates.status.match(topic);
    const result = telemetry || status ? undefined : templates.results.match(topic);
    const matched = telemetry ?? status ?? result;
    const deviceId = matched?.deviceId ?? acl.deviceOf(topic);

    // Hook: vendor mappings (gateway/mappings) take what no template nor device namespace does.
    if (!matched && deviceId === undefined && this.deps.mappings) {
      this.handleMapped(pub, this.deps.mappings, done);
      return;
    }
    if (identity !== undefined && deviceId !== undefined && deviceId !== identity) {
      this.deps.metrics.unauthorized.inc();
      this.reject('unauthorized', `device ${identity} may not publish as ${deviceId}`, pub, identity, done);
      return;
    }
    if (!matched || deviceId === undefined) {
      this.reject('unmapped', 'topic matches no template', pub, identity ?? deviceId, done);
      return;
    }
    if (!validDeviceId(deviceId)) {
      this.reject('invalid', 'device id in the topic is not a valid device id', pub, undefined, done);
      return;
    }
    if (payload.length > this.options.maxPayloadBytes) {
      this.reject(
        'oversized',
        `${payload.length} bytes, over the ${this.options.maxPayloadBytes}-byte limit`,
        pub,
        deviceId,
        done,
      );
      return;
    }
    this.see(deviceId);
    if (status) {
      this.deps.records.presence(deviceId, 'status', payload, done);
      return;
    }
    if (result) {
      if (!this.resultHandler) {
        this.reject('unknown-command', 'no command service runs here', pub, deviceId, done);
        return;
      }
      this.resultHandler(deviceId, payload, done);
      return;
    }
    let reading: DecodedReading;
    try {
      reading = decodePayload(payload, deviceId);
    } catch (err) {
      if (err instanceof PayloadError) {
        this.reject('malformed', err.reason, pub, deviceId, done);
        return;
      }
      throw err;
    }
    const type = telemetry?.type ?? reading.type ?? this.options.defaultType;
    const time = reading.time ?? this.deps.clock.now();
    if (reading.seq !== undefined) this.appendOne(deviceId, reading.seq, time, type, reading, pub, done);
    else
      this.deps.sequencer.assign(deviceId, (seq) =>
        this.appendOne(deviceId, seq, time, type, reading, pub, done),
      );
  }

  /** One reading of a native topic, validated and offered; an invalid one is rejected with the reason. */
  private appendOne(
    deviceId: string,
    seq: number,
    time: number,
    type: string,
    reading: DecodedReading,
    pub: IncomingPublish,
    done: Done,
  ): void {
    let entry: EncodedEnvelope;
    try {
      entry =
        reading.payloadText !== undefined
          ? encodeEnvelopeText({ deviceId, seq, time, type, payloadText: reading.payloadText }, this.limits)
          : encodeEnvelope({ deviceId, seq, time, type, payload: reading.payload }, this.limits);
    } catch (err) {
      if (err instanceof ValidationError) {
        this.reject('invalid', err.message, pub, deviceId, done);
        return;
      }
      throw err;
    }
    this.offer(entry, done);
  }

  private see(deviceId: string): void {
    this.seen.set(deviceId, this.deps.clock.now());
    if (!this.known.has(deviceId)) {
      this.known.add(deviceId);
      this.onDevice?.(deviceId);
    }
  }

  private offer(entry: EncodedEnvelope, done: Done): void {
    if (!this.attached) return;
    // Behind entries already waiting, so a device's order holds.
    if (this.waiting.length === 0 && this.deps.producer.offer(entry)) {
      this.pendingAcks.set(entry, done);
      return;
    }
    this.waiting.push([entry, done]);
  }

  private drainWaiting(): void {
    if (!this.attached) return;
    let i = 0;
    while (i < this.waiting.length) {
      const [entry, done] = this.waiting[i]!;
      if (!this.deps.producer.offer(entry)) break;
      this.pendingAcks.set(entry, done);
      i++;
    }
    if (i > 0) this.waiting = this.waiting.slice(i);
  }

  private reject(
    reason: RejectReason,
    detail: string,
    pub: IncomingPublish,
    deviceId: string | undefined,
    done: Done,
    mapping?: string,
  ) {
    this.deps.metrics.rejected.inc({ reason });
    this.deps.records.reject(
      { reason, detail, topic: pub.topic, deviceId, payload: pub.payload, mapping },
      done,
    );
  }

  // ---- Vendor mappings (gateway/mappings, docs/mappings.md) ----

  /**
   * A message for the vendor mappings: rejected with the mapping's name and
   * reason, ignored by an explicit ignore rule, or turned into readings that
   * go the usual way (gateway sequence numbers, idempotent append, `done`
   * once every one of them is in Redis). In broker mode the mapped device id
   * must be the authenticated device, as for native topics.
   */
  private handleMapped(pub: IncomingPublish, mappings: MappingSet, done: Done): void {
    const { topic, payload, identity } = pub;
    if (payload.length > this.options.maxPayloadBytes) {
      const detail = `${payload.length} bytes, over the ${this.options.maxPayloadBytes}-byte limit`;
      this.reject('oversized', detail, pub, identity, done, mappings.names.join(','));
      return;
    }
    const outcome = mappings.resolve(topic, payload);
    switch (outcome.kind) {
      case 'none':
        this.reject(
          'unmapped',
          `topic matches no template and no rule of mapping ${mappings.names.join(', ')}`,
          pub,
          identity,
          done,
          mappings.names.join(','),
        );
        return;
      case 'ignored':
        done();
        return;
      case 'rejected':
        this.reject(outcome.reason, outcome.detail, pub, identity, done, outcome.mapping);
        return;
    }
    const { deviceId, mapping } = outcome;
    if (identity !== undefined && deviceId !== identity) {
      this.deps.metrics.unauthorized.inc();
      const detail = `mapping ${mapping}: device ${identity} may not publish as ${deviceId}`;
      this.reject('unauthorized', detail, pub, identity, done, mapping);
      return;
    }
    if (!validDeviceId(deviceId)) {
      const detail = `mapping ${mapping}, rule ${outcome.rule}: device id ${JSON.stringify(deviceId)} is not a valid device id`;
      this.reject('invalid', detail, pub, undefined, done, mapping);
      return;
    }
    this.see(deviceId);
    const time = outcome.time ?? this.deps.clock.now();
    this.appendReadings(
      deviceId,
      outcome.readings.map((r) => ({ time, type: r.type, payload: r.payload })),
      pub,
      mapping,
      done,
    );
  }

  /** Appends several readings of one message, each with the device's next gateway sequence number; `done` after the last. */
  private appendReadings(
    deviceId: string,
    readings: readonly SinkReading[],
    pub: IncomingPublish,
    mapping: string,
    done: Done,
  ): void {
    const one = countdown(readings.length, done);
    for (const reading of readings) {
      this.deps.sequencer.assign(deviceId, (seq) => {
        let entry: EncodedEnvelope;
        try {
          entry = encodeEnvelope(
            { deviceId, seq, time: reading.time, type: reading.type, payload: reading.payload },
            this.limits,
          );
        } catch (err) {
          if (err instanceof ValidationError) {
            this.reject('invalid', `mapping ${mapping}: ${err.message}`, pub, deviceId, one, mapping);
            return;
          }
          throw err;
        }
        this.offer(entry, one);
      });
    }
  }
}
