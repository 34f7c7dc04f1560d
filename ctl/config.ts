/** Options of the operator CLI. */
import { opt } from '#shared/config/schema.js';
import { logSchema } from '#shared/log.js';
import { redisSchema } from '#shared/redis/options.js';
import { commandCtlSchema } from './command-options.js';

export const ENV_PREFIX = 'CTL';

export const ctlSchema = {
  json: opt.boolean(false, 'Print JSON for scripts instead of tables'),
  ...commandCtlSchema,
  ...redisSchema,
  ...logSchema,
} as const;
