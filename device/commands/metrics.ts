/** The command worker's Prometheus metrics. */
import { Counter, Histogram, type Registry } from '#shared/metrics.js';

export interface CommandMetrics {
  results: Counter<'status'>;
  attempts: Counter;
  duplicates: Counter;
  claimed: Counter;
  deadLetters: Counter;
  startedAtOnce: Counter;
  seconds: Histogram;
}

export function createCommandMetrics(registry: Registry): CommandMetrics {
  const registers = [registry];
  return {
    results: new Counter({
      name: 'commands_results_total',
      help: 'Terminal command results recorded by this device, by status',
      labelNames: ['status'],
      registers,
    }),
    attempts: new Counter({ name: 'commands_attempts_total', help: 'Handler attempts started', registers }),
    duplicates: new Counter({
      name: 'commands_duplicates_total',
      help: 'Deliveries of commands that had already ended (deduplicated, not run again)',
      registers,
    }),
    claimed: new Counter({
      name: 'commands_claimed_total',
      help: 'Pending commands claimed from dead consumers (XAUTOCLAIM)',
      registers,
    }),
    deadLetters: new Counter({
      name: 'commands_dead_letters_total',
      help: 'Commands dead-lettered',
      registers,
    }),
    startedAtOnce: new Counter({
      name: 'commands_started_at_once_total',
      help: 'Read-only commands started as soon as they were read, their receipt recorded with their result',
      registers,
    }),
    seconds: new Histogram({
      name: 'commands_seconds',
      help: 'From reading a command to its result being recorded',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    }),
  };
}
