/** Retention options: defaults, sources (env, nested file keys) and validation at start. */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '#shared/config/load.js';
import { ConfigError } from '#shared/errors.js';
import { commandSchema } from '../../device/commands/options.js';
import { gatewaySchema } from '../../gateway/config.js';
import { retentionOptions, retentionSchema } from '../../gateway/retention/options.js';

describe('retention options', () => {
  it('has a documented default policy for every family', () => {
    const o = retentionOptions();
    expect(Object.keys(o.policies).sort()).toEqual([
      'commands',
      'deadletter',
      'presence',
      'rejected',
      'results',
      'telemetry',
    ]);
    expect(o.policies.telemetry).toEqual({
      maxAge: 86_400_000,
      maxLen: 2_000_000,
      maxBytes: 256 * 1024 * 1024,
    });
    // Commands: per device, small; kept a week unless a group still needs them.
    expect(o.policies.commands).toEqual({ maxAge: 7 * 86_400_000, maxLen: 1000, maxBytes: 1024 * 1024 });
    expect(o.commandsScanPerPass).toBe(10_000);
    for (const [key, spec] of Object.entries(retentionSchema)) expect(spec.doc, key).not.toBe('');
  });

  it('reads durations and sizes from the environment and nested file keys', () => {
    const file = join(tmpdir(), `retention-${process.pid}.yaml`);
    writeFileSync(file, 'retention:\n  results:\n    maxAge: 2h\n    maxBytes: 1MiB\n');
    const config = loadConfig(retentionSchema, 'GATEWAY', {
      file,
      env: { GATEWAY_RETENTION_TELEMETRY_MAX_AGE: '30m', GATEWAY_RETENTION_TELEMETRY_MAX_LEN: '0' },
    });
    const o = retentionOptions(config);
    expect(o.policies.telemetry.maxAge).toBe(30 * 60_000);
    expect(o.policies.telemetry.maxLen).toBe(0);
    expect(o.policies.results).toMatchObject({ maxAge: 2 * 3_600_000, maxBytes: 1024 * 1024 });
  });

  it('refuses bad values with the option name', () => {
    expect(() =>
      loadConfig(retentionSchema, 'GATEWAY', { env: { GATEWAY_RETENTION_TELEMETRY_MAX_AGE: 'soon' } }),
    ).toThrow(/retention.telemetry.maxAge/);
    expect(() =>
      loadConfig(retentionSchema, 'GATEWAY', { env: { GATEWAY_RETENTION_CAP_HEADROOM: '2' } }),
    ).toThrow(ConfigError);
    expect(() => retentionOptions({ 'retention.presence.maxBytes': 1000 })).toThrow(
      /retention.presence.maxBytes.*at least 64KiB/,
    );
  });

  it("the writers' XADD MAXLEN caps are off by default and say they drop entries uncounted", () => {
    // They trim past consumer groups with no counter (docs/retention.md): retention is the counted way.
    for (const spec of [
      commandSchema['commands.resultsMaxLen'],
      gatewaySchema['gateway.rejectedMaxLen'],
      gatewaySchema['gateway.presenceMaxLen'],
    ]) {
      expect(spec.default).toBe(0);
      expect(spec.doc).toMatch(/UNCOUNTED/);
    }
  });
});
