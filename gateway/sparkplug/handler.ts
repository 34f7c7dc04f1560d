/**
 * Sparkplug B edge nodes in the gateway (Eclipse Sparkplug 3.0; docs/sparkplug.md):
 * one MQTT message of the spBv1.0 namespace in, telemetry entries, presence
 * records or a rejected entry out, then `done` (the PUBACK) once they are in Redis.
 *
 * - NBIRTH / DBIRTH: presence `birth` for the node (`<group>:<node>`) or the
 *   device (`<group>:<node>:<device>`); their metrics are entries, and their
 *   aliases the node's alias table. An NBIRTH starts a new session.
 * - NDATA / DDATA: a metric is an entry (name, datatype, value, timestamp,
 *   the Sparkplug seq); one by an alias no birth defined is rejected
 *   (`unknown-alias`) and the node asked to rebirth.
 * - DDEATH: presence `death` for the device. NDEATH: presence `death` for the
 *   node and its online devices, unless its bdSeq is not the current birth's
 *   (a stale will of an earlier connection [tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-offline]).
 * - seq: every message of a node but NDEATH carries the next seq, 0..255,
 *   255 -> 0. Another one is a gap: the message is taken and the node asked to
 *   rebirth (NCMD `Node Control/Rebirth` = true). The same seq and payload
 *   timestamp as the last message is that message again (an MQTT redelivery,
 *   PUBLISH dup): acknowledged, not written twice.
 *
 * Entries carry the gateway's own sequence numbers (gateway/sequencer.ts),
 * the idempotency key of the append; the Sparkplug seq (8 bits, wrapping) is
 * kept in the payload and used only for order.
 */
import type { Clock } from '#shared/clock.js';
import { SparkplugPayloadError } from '#shared/errors.js';
import type { Logger } from '#shared/log.js';
import { Counter, Gauge, type Registry } from '#shared/metrics.js';
import {
  DataType,
  dataTypeName,
  decodeSparkplug,
  encodeSparkplug,
  type SparkplugMetric,
  type SparkplugPayload,
} from '#shared/sparkplug/codec.js';
import {
  isSparkplugTopic,
  nodeTopic,
  parseTopic,
  type SparkplugTopic,
  sparkplugDeviceId,
} from '#shared/sparkplug/topic.js';
import {
  countdown,
  type Done,
  type IncomingPublish,
  type IngestSink,
  type ProtocolHandler,
  type SinkReading,
} from '../ingest.js';
import type { SparkplugOptions } from './options.js';
import { type NodeSession, NodeSessions, nextSeq } from './session.js';

/** Label of Sparkplug records (rejected entries' `m` field). */
export const SPARKPLUG = 'sparkplug';
/** Type of the telemetry entries of Sparkplug metrics. */
export const SPARKPLUG_TYPE = 'sparkplug';
export const REBIRTH_METRIC = 'Node Control/Rebirth';

export type RebirthReason = 'seq-gap' | 'unknown-alias' | 'no-birth';

/** Publishes to an edge node (NCMD/DCMD): the embedded broker or the upstream one. */
export type NodePublisher = (topic: string, payload: Buffer) => Promise<void>;

export interface SparkplugDeps {
  publish: NodePublisher;
  clock: Clock;
  logger: Logger;
  registry: Registry;
}

type DataTopic = Exclude<SparkplugTopic, { kind: 'state' }>;

export class SparkplugHandler implements ProtocolHandler {
  readonly sessions: NodeSessions;
  private readonly rebirths: Counter<'reason'>;
  private readonly duplicates: Counter;
  private readonly staleDeaths: Counter;
  private readonly groups: ReadonlySet<string> | undefined;
  /** Called when a node or device is born (true) or dies (false): command delivery's reach. */
  onPresence: ((deviceId: string, online: boolean) => void) | undefined;

  constructor(
    private readonly options: SparkplugOptions,
    private readonly deps: SparkplugDeps,
  ) {
    this.sessions = new NodeSessions(options.maxNodes);
    this.groups = options.groups.length > 0 ? new Set(options.groups) : undefined;
    const registers = [deps.registry];
    this.rebirths = new Counter({
      name: 'gateway_sparkplug_rebirth_requests_total',
      help: 'Rebirth requests (NCMD Node Control/Rebirth) sent to Sparkplug edge nodes, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.duplicates = new Counter({
      name: 'gateway_sparkplug_duplicates_total',
      help: 'Sparkplug messages received again (same seq and timestamp as the last one): acknowledged, not written',
      registers,
    });
    this.staleDeaths = new Counter({
      name: 'gateway_sparkplug_stale_deaths_total',
      help: 'NDEATH messages ignored: their bdSeq is not that of the current birth',
      registers,
    });
    const sessions = this.sessions;
    new Gauge({
      name: 'gateway_sparkplug_nodes',
      help: 'Sparkplug edge nodes with a session in memory (at most sparkplug.maxNodes)',
      registers,
      collect() {
        this.set(sessions.size);
      },
    });
  }

  /** Topics of the groups this gateway takes, for the bridge's subscription. */
  filters(): string[] {
    return this.groups ? [...this.groups].map((g) => `spBv1.0/${g}/#`) : ['spBv1.0/#'];
  }

  claims(topic: string): boolean {
    if (!isSparkplugTopic(topic)) return false;
    if (!this.groups) return true;
    const group = topic.split('/', 2)[1] ?? '';
    return this.groups.has(group) || group === 'STATE';
  }

  /**
   * Broker mode: an edge node `<group>:<node>` may subscribe to its own
   * commands (NCMD, DCMD of its devices) and to host application STATE.
   */
  allowsSubscribe(identity: string, filter: string): boolean {
    const parts = filter.split('/');
    if (parts[0] !== 'spBv1.0') return false;
    if (parts[1] === 'STATE') return parts.length === 3;
    const [, group, type, node, device] = parts;
    if (identity !== `${group}:${node}` || !this.claims(filter)) return false;
    if (type === 'NCMD') return parts.length === 4 || (parts.length === 5 && device === '#');
    return type === 'DCMD' && parts.length === 5 && device !== '';
  }

  handle(pub: IncomingPublish, sink: IngestSink, done: Done): void {
    const t = parseTopic(pub.topic);
    if (!t) {
      sink.reject('malformed', 'sparkplug: not a Sparkplug B topic', pub, pub.identity, done, SPARKPLUG);
      return;
    }
    // Host application state and commands (ours, seen again through the upstream broker) are not telemetry.
    if (t.kind === 'state' || t.type === 'NCMD' || t.type === 'DCMD') {
      done();
      return;
    }
    const nodeId = sparkplugDeviceId(t.group, t.node);
    const deviceId = t.kind === 'device' ? sparkplugDeviceId(t.group, t.node, t.device) : nodeId;
    // Broker mode: the edge node is the authenticated device; it speaks for its devices.
    if (pub.identity !== undefined && pub.identity !== nodeId) {
      const detail = `sparkplug: device ${pub.identity} may not publish as edge node ${nodeId}`;
      sink.reject('unauthorized', detail, pub, pub.identity, done, SPARKPLUG);
      return;
    }
    if (pub.payload.length > this.options.maxPayloadBytes) {
      const detail = `${pub.payload.length} bytes, over the ${this.options.maxPayloadBytes}-byte limit`;
      sink.reject('oversized', detail, pub, deviceId, done, SPARKPLUG);
      return;
    }
    let payload: SparkplugPayload;
    try {
      payload = decodeSparkplug(pub.payload);
    } catch (err) {
      if (!(err instanceof SparkplugPayloadError)) throw err;
      sink.reject('malformed', `sparkplug ${t.type}: ${err.reason}`, pub, deviceId, done, SPARKPLUG);
      return;
    }
    sink.seen(deviceId);
    const nodeKey = `${t.group}/${t.node}`;
    if (t.type === 'NDEATH') {
      this.nodeDeath(nodeKey, nodeId, payload, sink, done);
      return;
    }
    const session = t.type === 'NBIRTH' ? this.nodeBirth(nodeKey, payload) : this.sessions.touch(nodeKey);
    if (!session) {
      // The same NBIRTH again (redelivered).
      this.duplicates.inc();
      done();
      return;
    }
    // One rebirth request per message at most, for the first reason found.
    let rebirth: RebirthReason | undefined;
    if (t.type !== 'NBIRTH') {
      if (!session.born) rebirth = 'no-birth';
      else if (payload.seq !== undefined && session.lastSeq !== undefined) {
        if (payload.seq === session.lastSeq && payload.timestamp === session.lastTimestamp) {
          this.duplicates.inc();
          done();
          return;
        }
        if (payload.seq !== nextSeq(session.lastSeq)) rebirth = 'seq-gap';
      }
      if (payload.seq !== undefined) {
        session.lastSeq = payload.seq;
        session.lastTimestamp = payload.timestamp;
      }
    }
    this.take(t, session, nodeId, deviceId, payload, pub, sink, done, rebirth);
  }

  /** A new session; undefined when it is the current birth again (same bdSeq, seq and timestamp). */
  private nodeBirth(nodeKey: string, payload: SparkplugPayload): NodeSession | undefined {
    const bdSeq = bdSeqOf(payload);
    const old = this.sessions.get(nodeKey);
    if (
      old?.born &&
      old.bdSeq === bdSeq &&
      old.lastSeq === payload.seq &&
      old.lastTimestamp === payload.timestamp &&
      payload.timestamp !== undefined
    )
      return undefined;
    return this.sessions.birth(nodeKey, bdSeq, payload.seq, payload.timestamp);
  }

  private nodeDeath(
    nodeKey: string,
    nodeId: string,
    payload: SparkplugPayload,
    sink: IngestSink,
    done: Done,
  ): void {
    const session = this.sessions.get(nodeKey);
    const bdSeq = bdSeqOf(payload);
    // A will of an earlier connection arrives after the node was born again: it must not take it offline.
    if (session?.born && session.bdSeq !== undefined && bdSeq !== session.bdSeq) {
      this.staleDeaths.inc();
      done();
      return;
    }
    const devices = session ? [...session.devices] : [];
    this.sessions.death(nodeKey);
    const text = Buffer.from(JSON.stringify({ type: 'NDEATH', bdSeq }));
    const [group, node] = nodeKey.split('/') as [string, string];
    const ids = [nodeId, ...devices.map((d) => sparkplugDeviceId(group, node, d))];
    const one = countdown(ids.length, done);
    for (const id of ids) {
      this.onPresence?.(id, false);
      sink.presence(id, 'death', text, one);
    }
  }

  /** Births, data and device deaths: presence, then every resolvable metric as an entry. */
  private take(
    t: DataTopic,
    session: NodeSession,
    nodeId: string,
    deviceId: string,
    payload: SparkplugPayload,
    pub: IncomingPublish,
    sink: IngestSink,
    done: Done,
    rebirth: RebirthReason | undefined,
  ): void {
    const birth = t.type === 'NBIRTH' || t.type === 'DBIRTH';
    if (t.type === 'DBIRTH' && t.kind === 'device') session.devices.add(t.device);
    if (t.type === 'DDEATH' && t.kind === 'device') session.devices.delete(t.device);
    const readings: SinkReading[] = [];
    const unknown: number[] = [];
    const now = this.deps.clock.now();
    for (const m of payload.metrics) {
      let name = m.name;
      let datatype = m.datatype;
      if (birth && name !== undefined && m.alias !== undefined)
        session.aliases.set(m.alias, { name, datatype });
      if (name === undefined && m.alias !== undefined) {
        const known = session.aliases.get(m.alias);
        if (!known) {
          unknown.push(m.alias);
          continue;
        }
        name = known.name;
        if (datatype === DataType.Unknown) datatype = known.datatype;
      }
      if (name === undefined) {
        unknown.push(-1);
        continue;
      }
      readings.push(reading(m, name, datatype, payload, now));
    }
    const parts: Array<(d: Done) => void> = [];
    if (birth || t.type === 'DDEATH') {
      const online = t.type !== 'DDEATH';
      this.onPresence?.(deviceId, online);
      const text = Buffer.from(JSON.stringify({ type: t.type, seq: payload.seq, bdSeq: bdSeqOf(payload) }));
      parts.push((d) => sink.presence(deviceId, online ? 'birth' : 'death', text, d));
    }
    if (readings.length > 0) parts.push((d) => sink.append(deviceId, readings, pub, SPARKPLUG, d));
    if (rebirth !== undefined || unknown.length > 0)
      this.requestRebirth(t, session, rebirth ?? 'unknown-alias');
    if (unknown.length > 0) {
      const which = unknown.map((a) => (a < 0 ? 'a metric with neither name nor alias' : `alias ${a}`));
      const detail = `sparkplug ${t.type}: ${which.join(', ')} not defined by a birth certificate of ${nodeId}; rebirth requested`;
      parts.push((d) => sink.reject('unknown-alias', detail, pub, deviceId, d, SPARKPLUG));
    }
    const one = countdown(parts.length, done);
    for (const p of parts) p(one);
  }

  /** NCMD `Node Control/Rebirth` = true, at most once per sparkplug.rebirthInterval per node. */
  private requestRebirth(t: DataTopic, session: NodeSession, reason: RebirthReason): void {
    const now = this.deps.clock.now();
    if (session.rebirthAt !== 0 && now - session.rebirthAt < this.options.rebirthIntervalMs) return;
    session.rebirthAt = now;
    this.rebirths.inc({ reason });
    const topic = nodeTopic(t.group, 'NCMD', t.node);
    const payload = rebirthPayload(now);
    this.deps.logger.info({ group: t.group, node: t.node, reason }, 'sparkplug rebirth requested');
    this.deps
      .publish(topic, payload)
      .catch((err: Error) =>
        this.deps.logger.warn({ topic, error: err.message }, 'sparkplug rebirth request not published'),
      );
  }
}

/** The NCMD that asks an edge node for new birth certificates [tck-id-operational-behavior-edge-node-birth-sequence-rebirth]. */
export function rebirthPayload(now: number): Buffer {
  return encodeSparkplug({
    timestamp: now,
    metrics: [{ name: REBIRTH_METRIC, timestamp: now, datatype: DataType.Boolean, value: true }],
  });
}

function bdSeqOf(payload: SparkplugPayload): number | undefined {
  for (const m of payload.metrics) if (m.name === 'bdSeq' && typeof m.value === 'number') return m.value;
  return undefined;
}

function reading(
  m: SparkplugMetric,
  name: string,
  datatype: number,
  p: SparkplugPayload,
  now: number,
): SinkReading {
  const timestamp = m.timestamp ?? p.timestamp;
  return {
    time: timestamp ?? now,
    type: SPARKPLUG_TYPE,
    payload: {
      name,
      datatype: dataTypeName(datatype) ?? String(datatype),
      value: m.value,
      ...(timestamp !== undefined ? { timestamp } : {}),
      ...(p.seq !== undefined ? { seq: p.seq } : {}),
      ...(m.isHistorical ? { historical: true } : {}),
    },
  };
}
