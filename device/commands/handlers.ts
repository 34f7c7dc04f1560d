/**
 * Command handlers, registered by name. Each declares whether it is
 * idempotent (safe to run again after an interrupted attempt) and its
 * timeout. A handler throws CommandRejectedError to refuse its arguments
 * (ends `rejected`, no retry); any other error counts as transient and is
 * retried (ends `failed` and dead-lettered after commands.maxAttempts).
 */
import { appendFileSync, closeSync, fsyncSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandArgs } from '#shared/commands/codec.js';
import { coerce } from '#shared/config/load.js';
import type { Schema } from '#shared/config/schema.js';
import { CommandRejectedError } from '#shared/errors.js';
import type { Logger } from '#shared/log.js';

export interface HandlerContext {
  readonly deviceId: string;
  readonly commandId: string;
  readonly attempt: number;
  /** Aborted when the handler's timeout passes. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

export interface CommandHandler {
  readonly name: string;
  /** Running it twice has the same effect as once: an interrupted attempt may simply be run again. */
  readonly idempotent: boolean;
  /**
   * It changes nothing (ping, reading a status): there is no effect to take
   * twice. Such a command starts as soon as it is read, and its receipt and
   * start are recorded with its result, one round trip instead of two (see
   * docs/commands.md). Implies idempotent.
   */
  readonly readOnly?: boolean;
  readonly timeoutMs: number;
  run(args: CommandArgs, ctx: HandlerContext): unknown;
}

export class HandlerRegistry {
  private readonly handlers = new Map<string, CommandHandler>();

  register(handler: CommandHandler): this {
    if (this.handlers.has(handler.name)) throw new TypeError(`handler ${handler.name} is already registered`);
    if (handler.readOnly && !handler.idempotent)
      throw new TypeError(`handler ${handler.name} is read-only, so it must be declared idempotent too`);
    this.handlers.set(handler.name, handler);
    return this;
  }

  get(name: string): CommandHandler | undefined {
    return this.handlers.get(name);
  }

  get names(): string[] {
    return [...this.handlers.keys()];
  }

  get maxTimeoutMs(): number {
    return Math.max(0, ...[...this.handlers.values()].map((h) => h.timeoutMs));
  }
}

/** What the built-ins act on: the agent's sampler, logger and a simulated reboot. */
export interface DeviceControl {
  readonly sampler: {
    setInterval(type: string, intervalMs: number): boolean;
    intervalOf(type: string): number | undefined;
  };
  readonly logger: Logger;
  /** The agent's schema, to validate set-config values like any other config source. */
  readonly schema: Schema;
  reboot(): Promise<void> | void;
}

function stringArg(args: CommandArgs, name: string): string {
  const v = args[name];
  if (typeof v !== 'string' || v === '')
    throw new CommandRejectedError(`argument "${name}" must be a non-empty string`, 'ValidationError');
  return v;
}

/** Options that may change at run time through set-config; all others are refused. */
const RUNTIME_OPTIONS = /^(log\.level|sensors\.[a-z_]+\.interval)$/;

export function builtinHandlers(control: DeviceControl, timeoutMs: number): CommandHandler[] {
  const setInterval = (sensor: string, raw: unknown) => {
    const spec = control.schema[`sensors.${sensor}.interval`];
    if (!spec || control.sampler.intervalOf(sensor) === undefined) {
      throw new CommandRejectedError(`sensor "${sensor}" is not running on this device`, 'UnknownSensor');
    }
    let ms: number;
    try {
      ms = coerce(`sensors.${sensor}.interval`, spec, raw, 'command') as number;
    } catch (err) {
      throw new CommandRejectedError((err as Error).message, 'ValidationError');
    }
    const previous = control.sampler.intervalOf(sensor);
    control.sampler.setInterval(sensor, ms);
    return { sensor, intervalMs: ms, previousMs: previous };
  };
  return [
    {
      name: 'ping',
      idempotent: true,
      readOnly: true,
      timeoutMs,
      run: () => ({ pong: true, time: Date.now() }),
    },
    {
      name: 'set-interval',
      idempotent: true,
      timeoutMs,
      run: (args) => setInterval(stringArg(args, 'sensor'), args.interval),
    },
    {
      name: 'set-config',
      idempotent: true,
      timeoutMs,
      run: (args) => {
        const key = stringArg(args, 'key');
        if (!RUNTIME_OPTIONS.test(key)) {
          throw new CommandRejectedError(
            `option "${key}" cannot change at run time (changeable: log.level, sensors.<name>.interval)`,
            'ValidationError',
          );
        }
        const m = /^sensors\.([a-z_]+)\.interval$/.exec(key);
        if (m) return setInterval(m[1]!, args.value);
        const spec = control.schema[key];
        if (!spec) throw new CommandRejectedError(`unknown option "${key}"`, 'ValidationError');
        let value: unknown;
        try {
          value = coerce(key, spec, args.value, 'command');
        } catch (err) {
          throw new CommandRejectedError((err as Error).message, 'ValidationError');
        }
        control.logger.level = String(value);
        return { key, value };
      },
    },
    {
      // Not idempotent: a reboot interrupted half-way must not be repeated blindly.
      name: 'reboot',
      idempotent: false,
      timeoutMs,
      run: async () => {
        await control.reboot();
        return { rebootedAt: Date.now() };
      },
    },
  ];
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (ms <= 0) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

/**
 * Tests only (commands.testHandlers): handlers whose side effect is a line
 * "<commandId>" appended (and fsynced) to <dataDir>/effects.log, so a test can
 * count from outside the process how many times each command took effect.
 * Args: sleepBeforeMs / sleepAfterMs around the effect (cut short by the
 * timeout's abort: a timed-out attempt still takes effect, as a real one may),
 * slowAttempts (only the first N attempts sleep).
 * `test.read` is read-only: it records each run in <dataDir>/reads.log (an
 * observation for the test, not an effect) and throws on its first
 * `failAttempts` attempts, after sleeping `sleepMs`.
 */
export function testHandlers(dataDir: string, timeoutMs: number): CommandHandler[] {
  const file = join(dataDir, 'effects.log');
  const effect = (id: string) => {
    appendFileSync(file, `${id}\n`);
    const fd = openSync(file, 'r+');
    fsyncSync(fd);
    closeSync(fd);
  };
  const num = (args: CommandArgs, name: string) =>
    typeof args[name] === 'number' ? (args[name] as number) : 0;
  const run = async (args: CommandArgs, ctx: HandlerContext) => {
    // `slowAttempts`: only the first N attempts sleep (a timeout that a retry gets past).
    const slow = args.slowAttempts === undefined || ctx.attempt <= num(args, 'slowAttempts');
    await sleep(slow ? num(args, 'sleepBeforeMs') : 0, ctx.signal);
    effect(ctx.commandId);
    await sleep(num(args, 'sleepAfterMs'), ctx.signal);
    return { effect: ctx.commandId };
  };
  return [
    { name: 'test.effect', idempotent: false, timeoutMs, run },
    // The same, declared idempotent: an interrupted or timed-out attempt may be run again.
    { name: 'test.idempotent', idempotent: true, timeoutMs, run },
    {
      name: 'test.read',
      idempotent: true,
      readOnly: true,
      timeoutMs,
      run: async (args: CommandArgs, ctx: HandlerContext) => {
        appendFileSync(join(dataDir, 'reads.log'), `${ctx.commandId}\n`);
        await sleep(num(args, 'sleepMs'), ctx.signal);
        if (ctx.attempt <= num(args, 'failAttempts'))
          throw new RangeError(`test.read attempt ${ctx.attempt} fails`);
        return { read: ctx.commandId, attempt: ctx.attempt };
      },
    },
    {
      name: 'test.fail',
      idempotent: false,
      timeoutMs,
      run: () => {
        throw new RangeError('test.fail always fails');
      },
    },
  ];
}
