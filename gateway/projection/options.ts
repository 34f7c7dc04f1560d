/** Options of the latest-state projection; the gateway's schema spreads `projectionSchema` in. */
import { hostname } from 'node:os';
import { type ConfigOf, opt } from '#shared/config/schema.js';

export const projectionSchema = {
  // Off by default: the append scripts fold every entry they append into its device's state hash
  // (producer.foldState), which costs the gateway nothing and is never behind. This read-back
  // projection is for entries written without that (producer.foldState=false, other writers).
  'projection.enabled': opt.boolean(
    false,
    "Read every telemetry entry back and fold it into its device's latest-state hash, in this process: for entries written with producer.foldState=false or by other writers (by default the append folds them itself)",
  ),
  'projection.thread': opt.boolean(
    true,
    "Run the projection on a worker thread of the gateway process, with its own Redis connection: reading every entry back, decoding it and its garbage stay off the MQTT event loop (false: in the gateway's own loop)",
  ),
  'projection.group': opt.string(
    'projection',
    'Consumer group the projection reads the telemetry partitions with (one group for all gateways)',
  ),
  'projection.consumer': opt.string('', 'Consumer name in that group; default: hostname-pid'),
  // Larger rounds fold more readings of a device into one script call (bench/retention.ts); two rounds are
  // in memory at once (one read ahead), so memory is about 2 x batchSize x partitions entries.
  'projection.batchSize': opt.integer(2000, 'Entries read per partition per round (XREADGROUP COUNT)', {
    min: 1,
    max: 100_000,
  }),
  // Measured with bench/fleet.ts (2,000 drones, 22,000 readings/s): back-to-back rounds folded about one
  // reading per call (15,000 script calls/s, 39 % of a Redis core, most of the gateway's GC).
  'projection.interval': opt.duration(
    500,
    'While the projection keeps up, each partition is read once per interval (the partitions spread over it): readings of a device that arrive within it are folded in by one script call. Shorter is a fresher view for more Redis and gateway CPU; 0 = all partitions at once, back to back',
    { min: 0, max: 60_000 },
  ),
  'projection.idle': opt.duration(100, 'Pause between rounds that found nothing to read', {
    min: 1,
    max: 60_000,
  }),
  // A round reads at most batchSize x partitions entries, so a bound below that is crossed by every burst.
  'projection.maxLag': opt.integer(
    100_000,
    'The projection reports unhealthy (/healthz projection-lag) while its group has more entries than this not yet folded in, summed over the partitions (delivered and unacknowledged, or not yet delivered); 0 = never',
    { min: 0 },
  ),
  'projection.claimIdle': opt.duration(
    30_000,
    'Entries another consumer has held unacknowledged this long are claimed and folded in here (XAUTOCLAIM)',
    { min: 1000 },
  ),
} as const;

export type ProjectionConfig = ConfigOf<typeof projectionSchema>;

export interface ProjectionOptions {
  readonly group: string;
  readonly consumer: string;
  readonly batchSize: number;
  readonly interval: number;
  readonly idle: number;
  readonly claimIdle: number;
  readonly maxLag: number;
}

export function projectionOptions(config: Partial<ProjectionConfig> = {}): ProjectionOptions {
  const get = <K extends keyof ProjectionConfig>(key: K): ProjectionConfig[K] =>
    (config[key] ?? projectionSchema[key].default) as ProjectionConfig[K];
  return {
    group: get('projection.group'),
    consumer: get('projection.consumer') || `${hostname()}-${process.pid}`,
    batchSize: get('projection.batchSize'),
    interval: get('projection.interval'),
    idle: get('projection.idle'),
    claimIdle: get('projection.claimIdle'),
    maxLag: get('projection.maxLag'),
  };
}
