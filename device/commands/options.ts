/** Options of the agent's command worker; the defaults live here, once (docs/config.md is generated). */
import { type ConfigOf, opt } from '#shared/config/schema.js';

export const commandSchema = {
  'commands.enabled': opt.boolean(
    true,
    'Run the command worker (control commands from iot:{<device>}:commands)',
  ),
  'commands.consumer': opt.optionalString(
    'Consumer name in the command group; stable across restarts (default: the device id)',
  ),
  'commands.group': opt.string('agent', 'Consumer group of the device command stream'),
  'commands.blockTime': opt.duration(2000, 'How long one blocking XREADGROUP waits for new commands', {
    min: 10,
    max: 60_000,
  }),
  'commands.readCount': opt.integer(
    8,
    'Commands read per XREADGROUP (they are executed one by one, in order)',
    {
      min: 1,
      max: 1000,
    },
  ),
  'commands.maxAttempts': opt.integer(
    5,
    'Handler attempts before a failing command is dead-lettered and ends failed',
    { min: 1, max: 100 },
  ),
  'commands.retryBaseDelay': opt.duration(100, 'First retry delay; doubles per attempt, with jitter', {
    min: 1,
  }),
  'commands.retryMaxDelay': opt.duration(5000, 'Cap of the retry delay', { min: 1 }),
  'commands.handlerTimeout': opt.duration(
    10_000,
    'Timeout of the built-in handlers (each handler declares its own; this is theirs)',
    { min: 1 },
  ),
  'commands.claimIdle': opt.duration(
    30_000,
    "Idle time after which another consumer's pending command is claimed; must exceed every handler timeout plus commands.retryMaxDelay",
    { min: 10 },
  ),
  'commands.claimInterval': opt.duration(5000, 'How often to look for pending commands of dead consumers', {
    min: 10,
  }),
  'commands.clockSkewAllowance': opt.duration(
    2000,
    "Read-only commands (ping) start as soon as they are read only while their deadline is further away than this; nearer it they first check the ledger, since the gateway's sweep, on its own clock, may have expired them",
    { min: 0 },
  ),
  'commands.ledgerRetention': opt.duration(
    24 * 3_600_000,
    'How long the dedup ledger and journal remember a command after its deadline',
    { min: 1000 },
  ),
  // Off by default: the gateway's retention trims the results stream lag-aware and counts forced losses.
  'commands.resultsMaxLen': opt.integer(
    0,
    'Approximate XADD MAXLEN cap of the results stream; UNCOUNTED: it drops entries past consumer groups with no metric (0 = off, leave it to retention)',
    {
      min: 0,
    },
  ),
  'commands.testHandlers': opt.boolean(
    false,
    'Tests only: register the test.* handlers, which record side effects in <dataDir>/effects.log',
  ),
  'commands.testDelayAfterHandler': opt.duration(
    0,
    'Tests only: pause between a handler finishing and its result being recorded (crash tests)',
    { min: 0 },
  ),
} as const;

export type CommandConfig = ConfigOf<typeof commandSchema>;
