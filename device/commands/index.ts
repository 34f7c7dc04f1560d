/** Builds the agent's command worker from its config (device/agent.ts wires it in). */
import { join } from 'node:path';
import type { Clock } from '#shared/clock.js';
import { systemClock } from '#shared/clock.js';
import type { Schema } from '#shared/config/schema.js';
import type { Keys } from '#shared/keys.js';
import type { Logger } from '#shared/log.js';
import type { Registry } from '#shared/metrics.js';
import type { RedisClient } from '#shared/redis/connect.js';
import type { DurabilityConfig } from '#shared/telemetry/producer-options.js';
import { builtinHandlers, type DeviceControl, HandlerRegistry, testHandlers } from './handlers.js';
import { CommandJournal } from './journal.js';
import { createCommandMetrics } from './metrics.js';
import type { CommandConfig } from './options.js';
import { CommandWorker } from './worker.js';
import { workerOptions } from './worker-options.js';

export type { CommandWorker } from './worker.js';

export interface CommandWorkerDeps {
  client: RedisClient;
  keys: Keys;
  sampler: DeviceControl['sampler'] & { stop(): void; start(): void };
  schema: Schema;
  logger: Logger;
  registry: Registry;
  clock?: Clock;
}

export function createCommandWorker(
  config: CommandConfig &
    DurabilityConfig & { 'device.id': string; 'device.tags': readonly string[]; 'device.dataDir': string },
  deps: CommandWorkerDeps,
): CommandWorker | undefined {
  if (!config['commands.enabled']) return undefined;
  const clock = deps.clock ?? systemClock;
  const timeout = config['commands.handlerTimeout'];
  const handlers = new HandlerRegistry();
  const control: DeviceControl = {
    sampler: deps.sampler,
    logger: deps.logger,
    schema: deps.schema,
    // Simulated: the sensors stop and start again, as after a real reboot.
    reboot: () => {
      deps.logger.warn('simulated reboot: restarting the sensors');
      deps.sampler.stop();
      deps.sampler.start();
    },
  };
  for (const h of builtinHandlers(control, timeout)) handlers.register(h);
  if (config['commands.testHandlers']) {
    for (const h of testHandlers(config['device.dataDir'], timeout)) handlers.register(h);
  }
  const journal = CommandJournal.open(join(config['device.dataDir'], 'commands.journal'), clock.now(), {
    clock,
  });
  return new CommandWorker(deps.client, deps.keys, handlers, journal, workerOptions(config), {
    logger: deps.logger,
    metrics: createCommandMetrics(deps.registry),
    clock,
  });
}
