/** Flags of `ctl command` (parsed with the rest of ctl's options, so --help lists them). */
import { opt } from '#shared/config/schema.js';

export const commandCtlSchema = {
  ttl: opt.duration(30_000, 'command send: time to live; the command expires (never runs) after it', {
    min: 1,
  }),
  wait: opt.boolean(false, 'command send: wait for the terminal result and print it'),
  waitTimeout: opt.duration(0, 'command send --wait: how long to wait (0 = the ttl plus 5 s)', { min: 0 }),
  tag: opt.list([], 'command send: also send to every device registered with these tags'),
  fleet: opt.boolean(false, 'command send: send to every registered device'),
  commandId: opt.optionalString('command send: command id (idempotency key; default a random UUID)'),
  correlationId: opt.optionalString('command send: correlation id (default the command id)'),
} as const;
