/**
 * Options of the gateway's command delivery, beside their defaults, and the
 * fixed limits with why they are what they are. Config keys (gateway/config.ts):
 * commands.pollInterval, .doorbellPollInterval, .sweepInterval, .agentResultGrace, .ledgerRetention,
 * .doorbell, .resultsMaxLen.
 */
import { DEFAULT_LEDGER_RETENTION_MS } from '#shared/commands/send.js';

/** The consumer group every gateway reads MQTT devices' command streams in. */
export const COMMAND_GROUP = 'gateways';
/** After its deadline, how long a `delivered` command waits for the gateway holding it before the sweeper ends it. */
export const ORPHAN_GRACE_MS = 5000;
/** How long one doorbell read blocks; it wakes at once when a command is queued, so this only bounds idle round trips. */
export const DOORBELL_BLOCK_MS = 5000;
/** Entries a command-stream read takes at once; a device with more is read again at once. */
export const READ_COUNT = 32;
/** Devices the sweep looks at per tick (SSCAN pages of the fleet): a large fleet is swept over several ticks. */
export const SWEEP_DEVICES_PER_TICK = 500;
/** Entries of one device's command stream the sweep reads per tick. */
export const SWEEP_ENTRIES = 100;
/** Bridge mode: wait before publishing again a command the upstream broker did not take. */
export const REPUBLISH_DELAY_MS = 1000;

export interface CommandOptions {
  /** Fallback poll of every reachable device's command stream while the doorbell is off or failing. */
  pollIntervalMs: number;
  /** The same poll while the doorbell listens: only a backstop for rings trimmed unread or never written. */
  doorbellPollIntervalMs: number;
  sweepIntervalMs: number;
  /**
   * After its deadline, how long an agent's `delivered` or `running` command
   * waits for the agent's own result before the sweep ends it `unknown`. An
   * attempt starts only before the deadline and is bounded by its handler's
   * timeout, so past this grace the agent is gone (or cut off), not busy.
   */
  agentResultGraceMs: number;
  retentionMs: number;
  /** Block on the doorbell stream; off, commands wait for the fallback poll. */
  doorbell: boolean;
  /** Approximate MAXLEN of the results stream, as the agent's commands.resultsMaxLen (0 = off). */
  resultsMaxLen: number;
}

export const DEFAULT_COMMAND_OPTIONS: CommandOptions = {
  pollIntervalMs: 2000,
  doorbellPollIntervalMs: 30_000,
  sweepIntervalMs: 1000,
  agentResultGraceMs: 10 * 60_000,
  retentionMs: DEFAULT_LEDGER_RETENTION_MS,
  doorbell: true,
  resultsMaxLen: 0,
};
