/** Structured logging: every program logs JSON lines through pino. */
import { type Logger, pino } from 'pino';
import { opt } from './config/schema.js';

export type { Logger } from 'pino';

export const logSchema = {
  'log.level': opt.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info', 'Log level', {
    env: 'LOG_LEVEL',
  }),
} as const;

export function createLogger(name: string, level: string = 'info'): Logger {
  return pino({ name, level, base: { name, pid: process.pid } });
}

/** A logger that drops everything, for tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * Logs a condition once when it starts and once when it ends, with how many
 * times it happened in between: "never silently", but no log flood either.
 */
export class EpisodeLog {
  private active = false;
  private count = 0;
  private since = 0;

  constructor(
    private readonly logger: Logger,
    private readonly what: string,
  ) {}

  hit(fields: Record<string, unknown> = {}, n = 1): void {
    this.count += n;
    if (this.active) return;
    this.active = true;
    this.since = Date.now();
    this.logger.warn({ episode: this.what, ...fields }, `${this.what}: started`);
  }

  end(fields: Record<string, unknown> = {}): void {
    if (!this.active) return;
    this.logger.info(
      { episode: this.what, count: this.count, durationMs: Date.now() - this.since, ...fields },
      `${this.what}: ended after ${this.count} occurrences`,
    );
    this.active = false;
    this.count = 0;
  }

  get isActive(): boolean {
    return this.active;
  }
}
