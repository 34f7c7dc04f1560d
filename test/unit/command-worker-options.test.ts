/**
 * The command worker refuses, at start, a claim idle time that a live
 * consumer's entry can reach: one attempt (the handler timeout) plus the
 * retry backoff before its next XCLAIM. Its options follow the agent's
 * durability level (command-durability.test.ts tests what the level does).
 */
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { loadConfig } from '#shared/config/load.js';
import { ConfigError } from '#shared/errors.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRegistry } from '#shared/metrics.js';
import { HandlerRegistry } from '../../device/commands/handlers.js';
import type { CommandJournal } from '../../device/commands/journal.js';
import { createCommandMetrics } from '../../device/commands/metrics.js';
import { CommandWorker } from '../../device/commands/worker.js';
import { type WorkerOptions, workerOptions } from '../../device/commands/worker-options.js';
import { agentSchema } from '../../device/config.js';

const options: WorkerOptions = {
  deviceId: 'dev-o',
  tags: [],
  consumer: 'dev-o',
  group: 'agent',
  blockTimeMs: 1000,
  readCount: 8,
  maxAttempts: 3,
  retryBaseDelayMs: 100,
  retryMaxDelayMs: 5000,
  claimIdleMs: 12_000,
  claimIntervalMs: 1000,
  ledgerRetentionMs: 60_000,
  clockSkewAllowanceMs: 2000,
  resultsMaxLen: 0,
  delayAfterHandlerMs: 0,
  durability: undefined,
};

const make = (o: Partial<WorkerOptions>) => {
  const client = new Redis({ lazyConnect: true });
  const handlers = new HandlerRegistry().register({
    name: 'slow',
    idempotent: true,
    timeoutMs: 10_000,
    run: () => 1,
  });
  try {
    return new CommandWorker(
      client,
      new Keys('t', 4),
      handlers,
      {} as CommandJournal,
      { ...options, ...o },
      {
        logger: silentLogger(),
        metrics: createCommandMetrics(createRegistry({}, false)),
      },
    );
  } finally {
    client.disconnect();
  }
};

it('claimIdle must exceed the longest handler timeout plus retryMaxDelay, and the error says so', () => {
  // 12 s > 10 s timeout, but the gap between XCLAIMs can be 10 s + 5 s of backoff.
  let error: unknown;
  try {
    make({ claimIdleMs: 12_000 });
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as ConfigError).option).toBe('commands.claimIdle');
  expect((error as Error).message).toContain('commands.retryMaxDelay');
  expect(() => make({ claimIdleMs: 12_000, retryMaxDelayMs: 1000 })).not.toThrow();
  expect(() => make({ claimIdleMs: 15_001 })).not.toThrow();
});

it("the worker concludes commands at the agent's producer.durability level", () => {
  const at = (flags: Record<string, string>) =>
    workerOptions(loadConfig(agentSchema, 'AGENT', { env: {}, flags: { 'device.id': 'dev-o', ...flags } }))
      .durability;
  expect(at({})).toBeUndefined();
  expect(
    at({ 'producer.durability': 'replicated', 'producer.replicas': '2', 'producer.replicaTimeout': '300ms' }),
  ).toEqual({ replicas: 2, timeoutMs: 300 });
});
