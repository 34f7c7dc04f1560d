/** The command worker's options, mapped once from the agent's `commands.*` config (options.ts). */
import type { ReplicaWait } from '#shared/redis/durability.js';
import { type DurabilityConfig, durabilityOf } from '#shared/telemetry/producer-options.js';
import type { CommandConfig } from './options.js';

export interface WorkerOptions {
  deviceId: string;
  tags: readonly string[];
  consumer: string;
  group: string;
  blockTimeMs: number;
  readCount: number;
  maxAttempts: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  claimIdleMs: number;
  claimIntervalMs: number;
  ledgerRetentionMs: number;
  /** Read-only commands start at once only while their deadline is further away than this. */
  clockSkewAllowanceMs: number;
  resultsMaxLen: number;
  /** Tests only: pause between a handler's end and recording its result. */
  delayAfterHandlerMs: number;
  /** producer.durability: results reach this many replicas before their entry is acked. */
  durability: ReplicaWait | undefined;
}

export function workerOptions(
  config: CommandConfig & DurabilityConfig & { 'device.id': string; 'device.tags': readonly string[] },
): WorkerOptions {
  return {
    deviceId: config['device.id'],
    tags: config['device.tags'],
    consumer: config['commands.consumer'] ?? config['device.id'],
    group: config['commands.group'],
    blockTimeMs: config['commands.blockTime'],
    readCount: config['commands.readCount'],
    maxAttempts: config['commands.maxAttempts'],
    retryBaseDelayMs: config['commands.retryBaseDelay'],
    retryMaxDelayMs: config['commands.retryMaxDelay'],
    claimIdleMs: config['commands.claimIdle'],
    claimIntervalMs: config['commands.claimInterval'],
    ledgerRetentionMs: config['commands.ledgerRetention'],
    clockSkewAllowanceMs: config['commands.clockSkewAllowance'],
    resultsMaxLen: config['commands.resultsMaxLen'],
    delayAfterHandlerMs: config['commands.testDelayAfterHandler'],
    durability: durabilityOf(config),
  };
}
