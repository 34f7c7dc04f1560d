/**
 * How every command ends, for the agent's worker and the gateway alike: the
 * one terminal result is fixed in the ledger (the first one wins), published
 * to the results stream at most once (capped at `resultsMaxLen`), dead-lettered
 * at most once when it is `failed`, and only then is the entry acknowledged.
 *
 * Standalone server: one call of concludeCommand-6.lua does all of it (its
 * keys span hash slots, which only a standalone server allows). Cluster, or an
 * entry that must not be acknowledged here: finishCommand-1.lua in the
 * device's slot, then publishOnce-2.lua for the dead letter and the result in
 * the streams' own slots, then XACK. Both paths publish the same entries
 * through the same Lua fragments; a crash between steps is repaired by running
 * them again (each is idempotent), wherever a terminal ledger is met.
 */
import { Cluster } from 'ioredis';
import type { Clock } from '../clock.js';
import { ValidationError } from '../errors.js';
import type { Keys } from '../keys.js';
import type { RedisClient } from '../redis/connect.js';
import type { ReplicaWait } from '../redis/durability.js';
import { decodeResult, isTerminal, RESULT_FIELD, resultField, type TerminalStatus } from './codec.js';
import { deadLetterFields } from './deadletter.js';
import { concludeCommand, finishCommand, publishOnce } from './scripts.js';

export interface ConcludeSetup {
  readonly client: RedisClient;
  readonly keys: Keys;
  readonly clock: Clock;
  /** The consumer group that acknowledges the entry. */
  readonly group: string;
  /** Approximate MAXLEN of the results stream (0 = no trimming). */
  readonly resultsMaxLen: number;
  /**
   * `replicated`: the result (and dead letter) must reach this many replicas before the entry
   * is acknowledged, so a master lost after the ack cannot take the only copy of a result.
   */
  readonly durability?: ReplicaWait;
}

/** The entry a command came in, and how its end is recorded. */
export interface CommandEntry {
  readonly deviceId: string;
  readonly entryId: string;
  /** The entry's fields as read: a dead letter carries them. */
  readonly fields: readonly string[];
  /** Undefined for an entry with no readable id: no ledger, published once under `e:<entryId>`. */
  readonly commandId: string | undefined;
  /** When the ledger expires (deadline + retention); publish markers live as long. */
  readonly expireAt: number;
  /** Acknowledge it afterwards; false for the sweep, whose entry may be pending at another consumer. */
  readonly ack: boolean;
}

/** A read-only command that started at once: its receipt and start, recorded with its result. */
export interface StartedAtOnce {
  readonly receivedAt: number;
  readonly startedAt: number;
  readonly consumer: string;
}

export interface Conclusion {
  /** This call fixed the result in the ledger (false: another one was there and was published instead). */
  readonly fixed: boolean;
  readonly status: TerminalStatus;
  /** The result fields published: ours, or the ledger's when it held another. */
  readonly result: string[];
  readonly resultAdded: boolean;
  readonly deadLetterAdded: boolean;
}

/** Whether a command ends in one script call on this client (a standalone server). */
export function concludesInOneCall(client: RedisClient): boolean {
  return !(client instanceof Cluster);
}

function statusOf(result: readonly string[]): TerminalStatus {
  const status = resultField(result, RESULT_FIELD.status) ?? '';
  if (!isTerminal(status)) throw new ValidationError('status', `"${status}" is not a terminal status`);
  return status;
}

const attemptsOf = (result: readonly string[]) => Number(resultField(result, RESULT_FIELD.attempts) ?? 0);

export class Concluder {
  readonly oneCall: boolean;

  constructor(private readonly setup: ConcludeSetup) {
    this.oneCall = concludesInOneCall(setup.client);
  }

  /** Ends a command with `result` (its flat fields): fixed first-wins, published once, then acked. */
  async conclude(entry: CommandEntry, result: string[], early?: StartedAtOnce): Promise<Conclusion> {
    if (entry.commandId === undefined) return this.publish(entry, result, true);
    if (this.oneCall && entry.ack) return this.inOneCall(entry, entry.commandId, result, true, early);
    const { fixed, result: stored } = await finishCommand(this.setup.client, {
      ledger: this.setup.keys.commandLedger(entry.deviceId, entry.commandId),
      expireAt: entry.expireAt,
      status: statusOf(result),
      result,
      attempts: attemptsOf(result),
    });
    return this.publish(entry, stored, fixed);
  }

  /** The ledger already holds `stored`: publish it (once each) and ack, without fixing anything. */
  async republish(entry: CommandEntry, stored: string[]): Promise<Conclusion> {
    // The ledger is terminal with this very copy, so the script's finish is a no-op and it goes
    // straight to publishing (one round trip instead of two or three).
    if (this.oneCall && entry.ack && entry.commandId !== undefined)
      return this.inOneCall(entry, entry.commandId, stored, false);
    return this.publish(entry, stored, false);
  }

  private async inOneCall(
    entry: CommandEntry,
    commandId: string,
    result: string[],
    fixing: boolean,
    early?: StartedAtOnce,
  ): Promise<Conclusion> {
    const { client, keys, group, resultsMaxLen, durability } = this.setup;
    const status = statusOf(result);
    // With replicas to wait for, WAIT follows the script: its ack is replicated with the result or
    // not at all, so a promoted replica without the result has the entry pending again.
    const done = await concludeCommand(
      client,
      {
        ledger: keys.commandLedger(entry.deviceId, commandId),
        results: keys.results(),
        resultsMarker: keys.publishedMarker(keys.results(), entry.deviceId, commandId),
        deadLetters: keys.deadLetters(),
        deadLetterMarker: keys.publishedMarker(keys.deadLetters(), entry.deviceId, commandId),
        commandStream: keys.commands(entry.deviceId),
        expireAt: entry.expireAt,
        status,
        result,
        attempts: attemptsOf(result),
        markerTtlMs: this.markerTtl(entry),
        resultsMaxLen,
        group,
        entryId: entry.entryId,
        // The dead letter's fields are built (and sent) only for a failed result.
        deadLetter: status === 'failed' ? this.deadLetter(entry, result) : [],
        early,
      },
      durability,
    );
    // The ledger holds another result (fixed first elsewhere): that one wins, and is published
    // step by step, its dead letter built from this entry when it is `failed`.
    if (!done.concluded) return this.publish(entry, done.stored, false);
    return {
      fixed: fixing && done.fixed,
      status,
      result,
      resultAdded: done.resultAdded,
      deadLetterAdded: done.deadLetterAdded,
    };
  }

  /** The step-by-step path: dead letter (when failed) and result at most once each, then XACK. */
  private async publish(entry: CommandEntry, result: string[], fixed: boolean): Promise<Conclusion> {
    const { client, keys, group, resultsMaxLen, durability } = this.setup;
    const key = entry.commandId ?? `e:${entry.entryId}`;
    const ttlMs = this.markerTtl(entry);
    const status = statusOf(result);
    let deadLetterAdded = false;
    // The dead letter before the result: a sender that sees `failed` finds it.
    if (status === 'failed') {
      ({ added: deadLetterAdded } = await publishOnce(
        client,
        {
          stream: keys.deadLetters(),
          marker: keys.publishedMarker(keys.deadLetters(), entry.deviceId, key),
          ttlMs,
          maxLen: 0,
          fields: this.deadLetter(entry, result),
        },
        durability,
      ));
    }
    const { added: resultAdded } = await publishOnce(
      client,
      {
        stream: keys.results(),
        marker: keys.publishedMarker(keys.results(), entry.deviceId, key),
        ttlMs,
        maxLen: resultsMaxLen,
        fields: result,
      },
      durability,
    );
    // Acknowledge only now: the result is in the ledger and in the results stream (on as many
    // replicas as the durability level asks).
    if (entry.ack) await client.xack(keys.commands(entry.deviceId), group, entry.entryId);
    return { fixed, status, result, resultAdded, deadLetterAdded };
  }

  private deadLetter(entry: CommandEntry, result: readonly string[]): (string | number)[] {
    return deadLetterFields({
      deviceId: entry.deviceId,
      stream: this.setup.keys.commands(entry.deviceId),
      entryId: entry.entryId,
      fields: entry.fields,
      result: decodeResult(result),
    });
  }

  /** Markers must outlive every redelivery of the command: as long as its ledger. */
  private markerTtl(entry: CommandEntry): number {
    return Math.max(1000, entry.expireAt - this.setup.clock.now());
  }
}
