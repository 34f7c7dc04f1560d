/**
 * Retention options: one policy per stream family (maximum age, maximum
 * length, hard memory cap), declared once here with their defaults; the
 * gateway's schema spreads `retentionSchema` in. See docs/retention.md.
 */
import { type ConfigOf, type NumberSpec, opt } from '#shared/config/schema.js';
import { ConfigError } from '#shared/errors.js';
import { STREAM_FAMILIES, type StreamFamily } from '#shared/streams/inspect.js';

const DAY = 86_400_000;
const MiB = 1024 * 1024;

/** Defaults per family: what each stream is for decides how long it is kept. */
const DEFAULTS: Record<StreamFamily, { maxAge: number; maxLen: number; maxBytes: number; what: string }> = {
  telemetry: { maxAge: DAY, maxLen: 2_000_000, maxBytes: 256 * MiB, what: 'each telemetry partition' },
  results: { maxAge: 7 * DAY, maxLen: 200_000, maxBytes: 64 * MiB, what: 'the command results stream' },
  presence: { maxAge: DAY, maxLen: 200_000, maxBytes: 32 * MiB, what: 'the presence stream' },
  rejected: { maxAge: 7 * DAY, maxLen: 100_000, maxBytes: 64 * MiB, what: 'the rejected-input stream' },
  deadletter: { maxAge: 30 * DAY, maxLen: 100_000, maxBytes: 64 * MiB, what: 'the dead-letter stream' },
  // Per device. A command entry takes a few hundred bytes: 1000 entries stay well under the cap. The
  // soft policies never trim a command its group has not read or acknowledged (the agent and the
  // gateway acknowledge after the terminal result), nor any entry of a stream with no group yet.
  commands: { maxAge: 7 * DAY, maxLen: 1000, maxBytes: MiB, what: "each device's command stream" },
};

function familySchema<F extends StreamFamily>(family: F) {
  const d = DEFAULTS[family];
  return {
    [`retention.${family}.maxAge`]: opt.duration(
      d.maxAge,
      `Soft: trim entries of ${d.what} older than this, unless a consumer group still needs them (0 = no age limit)`,
      { min: 0 },
    ),
    [`retention.${family}.maxLen`]: opt.integer(
      d.maxLen,
      `Soft: keep at most this many entries in ${d.what}, unless a consumer group still needs them (0 = no limit)`,
      { min: 0 },
    ),
    [`retention.${family}.maxBytes`]: opt.size(
      d.maxBytes,
      `Hard cap on the memory of ${d.what}: past it entries are trimmed even when unprocessed, and the loss is counted (0 = no cap)`,
      { min: 0 },
    ),
  } as Record<`retention.${F}.${'maxAge' | 'maxLen' | 'maxBytes'}`, NumberSpec>;
}

export const retentionSchema = {
  'retention.enabled': opt.boolean(true, 'Run retention (stream trimming) in this process'),
  'retention.interval': opt.duration(10_000, 'Time between two trim passes over every stream', {
    min: 100,
    max: 3_600_000,
  }),
  'retention.capHeadroom': opt.number(
    0.1,
    'Once over a hard cap, trim to this fraction below it, so the cap is not hit again on the next append',
    { min: 0, max: 0.9 },
  ),
  // Bounds one script call's run time: Redis runs nothing else while a script runs.
  'retention.maxRemovePerCall': opt.integer(
    10_000,
    'Most entries the length policy or the hard cap removes in one script call (a pass repeats calls until done)',
    { min: 1, max: 1_000_000 },
  ),
  'retention.memorySamples': opt.integer(
    5,
    'MEMORY USAGE samples per stream (0 = exact, which walks the whole stream)',
    { min: 0, max: 10_000 },
  ),
  ...familySchema('telemetry'),
  ...familySchema('results'),
  ...familySchema('presence'),
  ...familySchema('rejected'),
  ...familySchema('deadletter'),
  ...familySchema('commands'),
  // One stream per device: found by an incremental SCAN, so a pass costs the same however big the fleet.
  'retention.commands.scanPerPass': opt.integer(
    10_000,
    "Keys a pass examines (SCAN COUNT, per Redis master) looking for devices' command streams; the scan goes on where the last pass stopped",
    { min: 100, max: 1_000_000 },
  ),
} as const;

export type RetentionConfig = ConfigOf<typeof retentionSchema>;

export interface RetentionPolicy {
  /** ms; 0 = off. */
  readonly maxAge: number;
  /** entries; 0 = off. */
  readonly maxLen: number;
  /** bytes; 0 = off. */
  readonly maxBytes: number;
}

export interface RetentionOptions {
  readonly interval: number;
  readonly capHeadroom: number;
  readonly maxRemovePerCall: number;
  readonly memorySamples: number;
  readonly commandsScanPerPass: number;
  readonly policies: Readonly<Record<StreamFamily, RetentionPolicy>>;
}

/** The options from a loaded config (any schema that spreads retentionSchema). */
export function retentionOptions(config: Partial<RetentionConfig> = {}): RetentionOptions {
  const get = <K extends keyof RetentionConfig>(key: K): RetentionConfig[K] =>
    (config[key] ?? retentionSchema[key].default) as RetentionConfig[K];
  const policies = {} as Record<StreamFamily, RetentionPolicy>;
  for (const family of STREAM_FAMILIES) {
    const policy = {
      maxAge: get(`retention.${family}.maxAge`),
      maxLen: get(`retention.${family}.maxLen`),
      maxBytes: get(`retention.${family}.maxBytes`),
    };
    validatePolicy(family, policy);
    policies[family] = policy;
  }
  return {
    interval: get('retention.interval'),
    capHeadroom: get('retention.capHeadroom'),
    maxRemovePerCall: get('retention.maxRemovePerCall'),
    memorySamples: get('retention.memorySamples'),
    commandsScanPerPass: get('retention.commands.scanPerPass'),
    policies,
  };
}

/**
 * Checks across options of one family (the schema checks each value alone).
 * A cap below 64 KiB would trim a stream on nearly every append: an empty
 * stream with one consumer group already takes a few KiB.
 */
export function validatePolicy(family: StreamFamily, policy: RetentionPolicy): void {
  for (const [name, value] of Object.entries(policy)) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new ConfigError(
        `retention.${family}.${name}`,
        'options',
        `must be an integer >= 0, got ${value}`,
      );
    }
  }
  if (policy.maxBytes > 0 && policy.maxBytes < 64 * 1024) {
    throw new ConfigError(
      `retention.${family}.maxBytes`,
      'options',
      `is ${policy.maxBytes} bytes; use 0 (no cap) or at least 64KiB`,
    );
  }
}
