/** Options of the batched telemetry producer; the defaults live in the schema, once. */
import { type ConfigOf, opt } from '../config/schema.js';
import { type ReplicaWait, replicaWaitOf } from '../redis/durability.js';

/**
 * The durability level (shared/redis/durability.ts): one per process, for everything it
 * acknowledges, so `ctl` takes these keys too.
 */
export const durabilitySchema = {
  'producer.durability': opt.enum(
    ['local', 'replicated'],
    'local',
    'What this process acknowledges (telemetry batches, commands it queues, results it publishes) must reach first. local: the master; replicated: also producer.replicas replicas (WAIT)',
  ),
  'producer.replicas': opt.integer(
    1,
    'Replicas that must confirm a write at the replicated durability level',
    {
      min: 1,
    },
  ),
  'producer.replicaTimeout': opt.duration(1000, 'How long WAIT waits for replicas', { min: 1 }),
} as const;

export type DurabilityConfig = ConfigOf<typeof durabilitySchema>;

/** The level as a ReplicaWait (undefined at `local`), read as the producer reads it. */
export function durabilityOf(c: DurabilityConfig): ReplicaWait | undefined {
  return replicaWaitOf(producerOptions(c));
}

export const producerSchema = {
  'producer.batchMaxEntries': opt.integer(100, 'A batch is sent as soon as it holds this many entries', {
    min: 1,
    max: 10_000,
  }),
  'producer.batchMaxBytes': opt.size(64 * 1024, 'A batch is sent as soon as it holds this many bytes', {
    min: 1024,
    // Redis rejects bulk arguments over 512 MB; a batch far below that keeps latency sane.
    max: 16 * 1024 * 1024,
  }),
  'producer.lingerMs': opt.duration(5, 'How long a partial batch waits for more entries before it is sent', {
    min: 0,
    max: 60_000,
  }),
  'producer.maxInFlightBatches': opt.integer(4, 'Batches sent but not yet acknowledged, at most', {
    min: 1,
    max: 256,
  }),
  'producer.maxBufferedEntries': opt.integer(
    10_000,
    'Entries held in memory (queued plus in flight) before the producer refuses more (back-pressure)',
    { min: 1 },
  ),
  'producer.appendTimeout': opt.duration(
    5000,
    'An append not acknowledged within this time counts as failed',
    {
      min: 10,
    },
  ),
  'producer.retryMaxDelay': opt.duration(2000, 'Cap of the backoff between retries of a failed batch', {
    min: 1,
  }),
  'producer.idempotent': opt.boolean(
    true,
    'Refuse (device, seq) pairs already appended, so retries never duplicate',
  ),
  'producer.foldState': opt.boolean(
    true,
    "Fold each appended reading into its device's latest-state hash in the same script call (the view `ctl device` and the dashboard read); false: the gateway's read-back projection (projection.enabled) must keep it",
  ),
  'producer.maxGaps': opt.integer(
    1024,
    'Out-of-order sequence ranges remembered per device above its contiguous mark (see docs/telemetry.md)',
    { min: 1, max: 100_000 },
  ),
  ...durabilitySchema,
} as const;

export type ProducerSchema = typeof producerSchema;
export type ProducerConfig = ConfigOf<ProducerSchema>;

export interface ProducerOptions {
  batchMaxEntries: number;
  batchMaxBytes: number;
  lingerMs: number;
  maxInFlightBatches: number;
  maxBufferedEntries: number;
  appendTimeoutMs: number;
  retryMaxDelayMs: number;
  idempotent: boolean;
  foldState: boolean;
  maxGaps: number;
  durability: 'local' | 'replicated';
  replicas: number;
  replicaTimeoutMs: number;
}

export function producerOptions(c: Partial<ProducerConfig> = {}): ProducerOptions {
  const v = <K extends keyof ProducerConfig>(k: K): ProducerConfig[K] =>
    (c[k] ?? producerSchema[k].default) as ProducerConfig[K];
  return {
    batchMaxEntries: v('producer.batchMaxEntries'),
    batchMaxBytes: v('producer.batchMaxBytes'),
    lingerMs: v('producer.lingerMs'),
    maxInFlightBatches: v('producer.maxInFlightBatches'),
    // At least one full batch must fit, or the producer could never send a full batch.
    maxBufferedEntries: Math.max(v('producer.maxBufferedEntries'), v('producer.batchMaxEntries')),
    appendTimeoutMs: v('producer.appendTimeout'),
    retryMaxDelayMs: v('producer.retryMaxDelay'),
    idempotent: v('producer.idempotent'),
    foldState: v('producer.foldState'),
    maxGaps: v('producer.maxGaps'),
    durability: v('producer.durability'),
    replicas: v('producer.replicas'),
    replicaTimeoutMs: v('producer.replicaTimeout'),
  };
}
