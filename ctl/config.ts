/** Options of the operator CLI. */
import { opt } from '#shared/config/schema.js';
import { logSchema } from '#shared/log.js';
import { redisSchema } from '#shared/redis/options.js';
import { durabilitySchema } from '#shared/telemetry/producer-options.js';
import { commandCtlSchema } from './command-options.js';

export const ENV_PREFIX = 'CTL';

export const ctlSchema = {
  json: opt.boolean(false, 'Print JSON for scripts instead of tables'),
  // Twice the dead letters' default retention (retention.deadletter.maxAge, 30 d): a record that
  // expired while its dead letter is still kept would let a later replay run the command again.
  'dlq.replayRecordTtl': opt.duration(
    60 * 86_400_000,
    'How long `ctl dlq replay` remembers that it replayed a dead letter (must be at least retention.deadletter.maxAge)',
    { min: 86_400_000 },
  ),
  ...commandCtlSchema,
  // Commands sent and dead letters replayed are acknowledged at this level.
  ...durabilitySchema,
  ...redisSchema,
  ...logSchema,
} as const;
