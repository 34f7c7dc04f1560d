/**
 * Step 4, run: one handler attempt, journaled first when the handler is not
 * idempotent (`start`, fsync), bounded by its timeout, its outcome classified
 * for steps.afterAttempt. A handler that returns at once (ping) costs no
 * timer, controller or promise race: nothing is left to time out or abort.
 */
import type { Command } from '#shared/commands/codec.js';
import { CommandRejectedError, HandlerTimeoutError } from '#shared/errors.js';
import type { Logger } from '#shared/log.js';
import type { CommandHandler } from './handlers.js';
import type { CommandJournal } from './journal.js';
import type { Outcome } from './steps.js';

/**
 * A read-only command that started at once and is still running after this
 * long gets `running` in its ledger (beginCommand), so the progress a sender
 * sees stays true; a quick one (a ping) has its receipt recorded with its result.
 */
export const RECORD_RUNNING_AFTER_MS = 20;

const isPromiseLike = (v: unknown): v is PromiseLike<unknown> =>
  typeof (v as { then?: unknown } | null)?.then === 'function';

export interface AttemptDeps {
  deviceId: string;
  journal: Pick<CommandJournal, 'append'>;
  /** The journal record's expiry after the deadline. */
  ledgerRetentionMs: number;
  logger: Logger;
}

/**
 * One handler attempt. `onSlow` runs if the attempt is still going after RECORD_RUNNING_AFTER_MS.
 * A handler that returns at once (ping) costs no timer, controller or promise race: nothing is
 * left to time out or abort.
 */
export async function runAttempt(
  handler: CommandHandler,
  command: Command,
  attempt: number,
  deps: AttemptDeps,
  onSlow?: () => void,
): Promise<Outcome> {
  if (!handler.idempotent)
    deps.journal.append({
      i: command.id,
      p: 'start',
      a: attempt,
      x: command.deadline + deps.ledgerRetentionMs,
    });
  let ac: AbortController | undefined;
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  let slow: NodeJS.Timeout | undefined;
  const ctx = {
    deviceId: deps.deviceId,
    commandId: command.id,
    attempt,
    logger: deps.logger,
    // Made on first use; one asked for after the timeout comes aborted.
    get signal(): AbortSignal {
      ac ??= new AbortController();
      if (timedOut) ac.abort();
      return ac.signal;
    },
  };
  try {
    const running = handler.run(command.args, ctx);
    if (!isPromiseLike(running)) return { kind: 'ok', output: running };
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        ac?.abort();
        reject(new HandlerTimeoutError(handler.name, handler.timeoutMs));
      }, handler.timeoutMs);
    });
    if (onSlow) slow = setTimeout(onSlow, RECORD_RUNNING_AFTER_MS);
    const output = await Promise.race([running, timeout]);
    return { kind: 'ok', output };
  } catch (error) {
    if (error instanceof CommandRejectedError) return { kind: 'rejected', error };
    // A non-idempotent handler past its timeout may still take effect: retrying could double it.
    if (error instanceof HandlerTimeoutError && !handler.idempotent) return { kind: 'unknown', error };
    deps.logger.debug({ commandId: command.id, attempt, err: String(error) }, 'command attempt failed');
    return { kind: 'transient', error };
  } finally {
    clearTimeout(timer);
    clearTimeout(slow);
  }
}
