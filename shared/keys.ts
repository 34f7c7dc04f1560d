/**
 * The one module that names Redis keys. Every key that a script or multi-key
 * command touches together shares a Redis Cluster hash tag (the part in
 * braces), so the same code runs on a standalone server and on a cluster.
 *
 * Layout (prefix defaults to "iot"; see docs/keys.md):
 *   iot:telemetry:{p<N>}          telemetry partition stream N
 *   iot:telemetry:{p<N>}:seq      per-device sequence high-water marks for partition N (hash)
 *   iot:state:{p<N>}              latest state of partition N's devices (hash, field = device id, "<device id> <type>")
 *   iot:{<deviceId>}:commands     a device's command stream
 *   iot:{<deviceId>}:...          other per-device keys (command dedup ledgers, replay records)
 *   iot:results, iot:deadletter, iot:rejected, iot:presence   shared streams
 */
import { ValidationError } from './errors.js';

export const DEFAULT_PREFIX = 'iot';
export const DEFAULT_PARTITIONS = 16;

/** Device ids may not contain braces (they would break hash tags) or whitespace. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9._:@-]{1,64}$/;

export function assertDeviceId(deviceId: string): void {
  if (!DEVICE_ID_PATTERN.test(deviceId)) {
    throw new ValidationError(
      'deviceId',
      `"${deviceId}" must match ${DEVICE_ID_PATTERN} (1-64 chars, no braces)`,
    );
  }
}

/**
 * FNV-1a 32-bit: stable across processes, platforms and versions, which is what
 * a partition map must be (a device must always land in the same partition).
 */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

export function partitionOf(deviceId: string, partitions: number): number {
  return fnv1a32(deviceId) % partitions;
}

export class Keys {
  constructor(
    readonly prefix: string = DEFAULT_PREFIX,
    readonly partitions: number = DEFAULT_PARTITIONS,
  ) {
    if (!/^[A-Za-z0-9._-]{1,32}$/.test(prefix))
      throw new ValidationError('prefix', `"${prefix}" is not a valid key prefix`);
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > 4096) {
      throw new ValidationError('partitions', `${partitions} must be an integer in 1..4096`);
    }
  }

  partitionOf(deviceId: string): number {
    return partitionOf(deviceId, this.partitions);
  }

  /** Items grouped by their device's partition, each group in the items' order. */
  byPartition<T>(items: Iterable<T>, deviceOf: (item: T) => string): Map<number, T[]> {
    const groups = new Map<number, T[]>();
    for (const item of items) {
      const p = this.partitionOf(deviceOf(item));
      const group = groups.get(p);
      if (group) group.push(item);
      else groups.set(p, [item]);
    }
    return groups;
  }

  telemetryStream(partition: number): string {
    return `${this.prefix}:telemetry:{p${partition}}`;
  }

  /** Sequence state lives beside its stream, in the same hash slot, for the idempotent-append script. */
  telemetrySeqState(partition: number): string {
    return `${this.prefix}:telemetry:{p${partition}}:seq`;
  }

  telemetryStreamFor(deviceId: string): string {
    return this.telemetryStream(this.partitionOf(deviceId));
  }

  allTelemetryStreams(): string[] {
    return Array.from({ length: this.partitions }, (_, p) => this.telemetryStream(p));
  }

  /** Per-device key; the device id is the hash tag so all of a device's keys share a slot. */
  device(deviceId: string, suffix: string): string {
    return `${this.prefix}:{${deviceId}}:${suffix}`;
  }

  commands(deviceId: string): string {
    return this.device(deviceId, 'commands');
  }

  /**
   * Latest state of partition N's devices, one hash (shared/state.ts decodes it): in the
   * partition's slot, so the append script folds every entry it appends into it in the same
   * call (no read-back of the stream), one HMGET (two with late readings) and one HSET however many
   * devices a batch has.
   */
  partitionState(partition: number): string {
    return `${this.prefix}:state:{p${partition}}`;
  }

  partitionStateFor(deviceId: string): string {
    return this.partitionState(this.partitionOf(deviceId));
  }

  /** Dedup ledger of one command on one device: a hash with its own expiry, in the device's slot. */
  commandLedger(deviceId: string, commandId: string): string {
    return this.device(deviceId, `cmd:${commandId}`);
  }

  /**
   * Record that a dead letter was replayed (ctl dlq replay): in the device's
   * slot, so it is written in one script with the replay's entry and ledger.
   */
  replayRecord(deviceId: string, deadLetterId: string): string {
    return this.device(deviceId, `replay:${deadLetterId}`);
  }

  /**
   * Publish-once marker of a command's entry in a shared stream (results, dead
   * letters). Its hash tag is the stream's whole name, so it lands in the same
   * slot as the stream itself ("{iot:results}:pub:..." hashes like "iot:results").
   */
  publishedMarker(stream: string, deviceId: string, commandKey: string): string {
    return `{${stream}}:pub:${deviceId}:${commandKey}`;
  }

  /** Set of every device id whose agent has registered (fleet-wide commands). */
  fleet(): string {
    return `${this.prefix}:devices`;
  }

  /** Set of the device ids that registered a tag (group commands). */
  tag(tag: string): string {
    return `${this.prefix}:tag:${tag}`;
  }

  results(): string {
    return `${this.prefix}:results`;
  }

  deadLetters(): string {
    return `${this.prefix}:deadletter`;
  }

  rejected(): string {
    return `${this.prefix}:rejected`;
  }

  presence(): string {
    return `${this.prefix}:presence`;
  }

  /** Hash: device id -> last time (ms) a gateway saw it connect, publish or disconnect. */
  lastSeen(): string {
    return `${this.prefix}:lastseen`;
  }

  /** Set of the device ids that reach the system through an MQTT gateway (their commands go through gateways). */
  mqttDevices(): string {
    return `${this.prefix}:mqtt:devices`;
  }

  /**
   * Capped stream of device ids that just had a command queued: a hint that
   * gateways block on (XREAD BLOCK) so they read that device's command stream
   * at once instead of waiting for their poll. One key, so one slot in a cluster.
   */
  commandDoorbell(): string {
    return `${this.prefix}:commands:doorbell`;
  }

  /**
   * Lease of the gateway that sweeps command deadlines (gateway/commands/sweeper.ts):
   * one gateway at a time scans the fleet, so the work does not grow with the
   * number of gateways. Only work is saved: every sweep step is safe twice.
   */
  commandSweepLease(): string {
    return `${this.prefix}:commands:sweeper`;
  }

  /** Device id -> id of the gateway holding its MQTT session (broker mode; gateway/lease.ts). */
  sessions(): string {
    return `${this.prefix}:sessions`;
  }

  /** Gateway id -> JSON {mode, bridgeConnections, startedAt}: the gateways sharing this fleet (gateway/lease.ts). */
  gateways(): string {
    return `${this.prefix}:gateways`;
  }

  /** A gateway's lease: present while it runs (renewed every third of gateway.leaseTtl). */
  gatewayLease(gatewayId: string): string {
    return `${this.prefix}:gateway:${gatewayId}:lease`;
  }

  /** Held (SET NX, with an expiry) by the gateway taking over a gone gateway's sessions. */
  gatewayAdoption(gatewayId: string): string {
    return `${this.prefix}:gateway:${gatewayId}:adoption`;
  }

  /** Counter of the sequence numbers a gateway reserved for a device that sends none (INCRBY blocks). */
  gatewaySequence(deviceId: string): string {
    return this.device(deviceId, 'gwseq');
  }
}

/**
 * Every kind of key, for docs/keys.md (generated by `npm run docs:keys`; a
 * unit test fails when a Keys method has no entry here or the page is stale).
 */
export const KEY_KINDS: ReadonlyArray<{
  method: keyof Keys;
  example: (keys: Keys) => string;
  type: 'stream' | 'hash' | 'set' | 'string';
  what: string;
}> = [
  {
    method: 'telemetryStream',
    example: (k) => k.telemetryStream(0).replace('{p0}', '{p<N>}'),
    type: 'stream',
    what: 'telemetry partition N (N = FNV-1a(deviceId) mod `redis.partitions`)',
  },
  {
    method: 'telemetrySeqState',
    example: (k) => k.telemetrySeqState(0).replace('{p0}', '{p<N>}'),
    type: 'hash',
    what: 'per-device sequence state of partition N, field = device id (see telemetry.md)',
  },
  {
    method: 'commands',
    example: (k) => k.commands('<deviceId>'),
    type: 'stream',
    what: "a device's command stream",
  },
  {
    method: 'partitionState',
    example: (k) => k.partitionState(0).replace('{p0}', '{p<N>}'),
    type: 'hash',
    what: 'latest state of partition N\'s devices, folded in by the append script: field `<deviceId>` = "seq time seen types...", `<deviceId> <type>` = "seq time payload" (see retention.md)',
  },
  {
    method: 'commandLedger',
    example: (k) => k.commandLedger('<deviceId>', '<commandId>'),
    type: 'hash',
    what: "one command's dedup ledger (status, attempts, result), with its own expiry",
  },
  {
    method: 'replayRecord',
    example: (k) => k.replayRecord('<deviceId>', '<deadLetterId>'),
    type: 'hash',
    what: 'record that a dead letter was replayed (`ctl dlq replay` is safe to repeat), kept `dlq.replayRecordTtl`',
  },
  {
    method: 'gatewaySequence',
    example: (k) => k.gatewaySequence('<deviceId>'),
    type: 'string',
    what: 'counter of the sequence numbers a gateway reserved for a device that sends none',
  },
  {
    method: 'publishedMarker',
    example: (k) => k.publishedMarker(k.results(), '<deviceId>', '<commandKey>'),
    type: 'string',
    what: "publish-once marker of a command's entry in a shared stream (same slot as the stream)",
  },
  { method: 'results', example: (k) => k.results(), type: 'stream', what: 'terminal command results' },
  { method: 'deadLetters', example: (k) => k.deadLetters(), type: 'stream', what: 'dead-lettered commands' },
  {
    method: 'rejected',
    example: (k) => k.rejected(),
    type: 'stream',
    what: 'rejected input, with the reason',
  },
  {
    method: 'presence',
    example: (k) => k.presence(),
    type: 'stream',
    what: 'device connects, disconnects, last wills',
  },
  {
    method: 'lastSeen',
    example: (k) => k.lastSeen(),
    type: 'hash',
    what: 'device id -> last time (ms) a gateway saw it connect, publish or disconnect',
  },
  {
    method: 'fleet',
    example: (k) => k.fleet(),
    type: 'set',
    what: 'every device id whose agent registered (fleet-wide commands)',
  },
  {
    method: 'tag',
    example: (k) => k.tag('<tag>'),
    type: 'set',
    what: 'the device ids that registered a tag (group commands)',
  },
  {
    method: 'mqttDevices',
    example: (k) => k.mqttDevices(),
    type: 'set',
    what: 'device ids that reach the system through an MQTT gateway',
  },
  {
    method: 'commandDoorbell',
    example: (k) => k.commandDoorbell(),
    type: 'stream',
    what: 'device ids that just had a command queued (a hint for gateways; capped)',
  },
  {
    method: 'sessions',
    example: (k) => k.sessions(),
    type: 'hash',
    what: "device id -> the gateway holding its MQTT session (broker mode); a device is online while that gateway's lease lives",
  },
  {
    method: 'gateways',
    example: (k) => k.gateways(),
    type: 'hash',
    what: 'the gateways sharing the fleet: id -> {mode, bridge connections, start time} (gateway/lease.ts)',
  },
  {
    method: 'gatewayLease',
    example: (k) => k.gatewayLease('<gatewayId>'),
    type: 'string',
    what: "a gateway's lease, with an expiry of `gateway.leaseTtl`; gone = the gateway is gone",
  },
  {
    method: 'gatewayAdoption',
    example: (k) => k.gatewayAdoption('<gatewayId>'),
    type: 'string',
    what: "held by the gateway taking over a gone gateway's bridge sessions (SET NX with an expiry)",
  },
  {
    method: 'commandSweepLease',
    example: (k) => k.commandSweepLease(),
    type: 'string',
    what: 'lease of the gateway sweeping command deadlines (saves work; safety needs none)',
  },
];

/** The key table of docs/keys.md, made from KEY_KINDS. */
export function keyTable(keys: Keys = new Keys()): string {
  const rows = KEY_KINDS.map((kind) => `| \`${kind.example(keys)}\` | ${kind.type} | ${kind.what} |`);
  return ['| key | type | what |', '| --- | --- | --- |', ...rows].join('\n');
}
