import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
type Logger = ((...args: unknown[]) => void) & { enabled: boolean; extend(sub: string): Logger };
type CreateDebug = ((namespace: string) => Logger) & { enable(ns: string): void; disable(): string };
const quiet = require('../../shared/process/quiet-debug.cjs') as CreateDebug;
const real = require('debug') as CreateDebug;

describe('quiet-debug (the `debug` package of the bundled programs)', () => {
  it('hands a namespace DEBUG does not enable a logger that takes no rest arguments', () => {
    real.disable();
    const off = quiet('mqtt-packet:parser');
    expect(off.enabled).toBe(false);
    // A rest parameter (...args) is what allocates on every call: the real logger has one.
    expect(off.toString()).not.toContain('...');
    expect(real('mqtt-packet:parser').toString()).toContain('...');
    expect(off.extend('sub').enabled).toBe(false);
    expect(() => off('parse: %s', 'header')).not.toThrow();
  });

  it('hands an enabled namespace the real logger, and is its own default export (ioredis)', () => {
    real.enable('mqttjs*');
    try {
      const on = quiet('mqttjs:client');
      expect(on.enabled).toBe(true);
      expect(on.toString()).toBe(real('mqttjs:client').toString());
      expect(quiet('ioredis:redis').enabled).toBe(false);
      expect((quiet as unknown as { default: unknown }).default).toBe(quiet);
    } finally {
      real.disable();
    }
  });
});
