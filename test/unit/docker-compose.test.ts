/**
 * docker-compose.yml cannot run here (no Docker engine), so its structure is
 * checked: the services, their images or builds, that each command runs an
 * npm script that exists with flags the program knows, the ports, and that
 * Prometheus scrapes exactly the metrics ports the services listen on.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { flagName, type Schema } from '#shared/config/schema.js';
import { simSchema } from '../../firmware-sim/config.js';
import { gatewaySchema } from '../../gateway/config.js';

const root = new URL('../../', import.meta.url);
const read = (file: string) => readFileSync(new URL(file, root), 'utf8');

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, unknown> | string[];
}
const compose = parse(read('docker-compose.yml')) as { services: Record<string, Service> };
const prometheus = parse(read('prometheus.yml')) as {
  scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
};
const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
const services = compose.services;

/** The value after a flag in a command, e.g. --metrics-port 9464. */
function flag(command: readonly string[], name: string): string | undefined {
  const i = command.indexOf(`--${name}`);
  return i >= 0 ? command[i + 1] : undefined;
}

describe('docker-compose.yml', () => {
  it('has Redis with AOF on, the gateway, a simulated fleet and Prometheus', () => {
    expect(Object.keys(services).sort()).toEqual(['fleet', 'gateway', 'prometheus', 'redis']);
    expect(services.redis!.image).toMatch(/^redis:\d/);
    const redisCmd = services.redis!.command!;
    expect(flag(redisCmd, 'appendonly')).toBe('yes');
    expect(services.prometheus!.image).toMatch(/^prom\/prometheus:v\d/);
  });

  it('builds the programs from the Dockerfile, each running an npm script with flags its schema knows', () => {
    expect(existsSync(new URL('Dockerfile', root))).toBe(true);
    const programs: Record<string, { script: string; schema: Schema }> = {
      gateway: { script: 'gateway', schema: gatewaySchema },
      fleet: { script: 'sim', schema: simSchema },
    };
    for (const [name, { script, schema }] of Object.entries(programs)) {
      const s = services[name]!;
      expect(s.build).toBe('.');
      const cmd = s.command!;
      expect(cmd.slice(0, 4)).toEqual(['npm', 'run', script, '--']);
      expect(scripts[script]).toBeDefined();
      const known = new Set(Object.keys(schema).map(flagName));
      for (const arg of cmd.slice(4).filter((a) => a.startsWith('--'))) expect(known).toContain(arg.slice(2));
      // Every service reaches Redis by its compose name.
      expect(s.environment?.REDIS_URL).toBe('redis://redis:6379');
      expect(Object.keys(s.depends_on ?? {})).toContain('redis');
    }
    // The fleet's MQTT devices connect to the gateway's broker port.
    const gw = services.gateway!.command!;
    expect(flag(services.fleet!.command!, 'mqtt-url')).toBe(`mqtt://gateway:${flag(gw, 'broker-port')}`);
    expect(flag(gw, 'broker-host')).toBe('0.0.0.0');
    // Bound on all interfaces in its container, devices must prove who they are, or (anonymous,
    // for the simulated fleet) the port is published on the host's loopback only.
    const port = flag(gw, 'broker-port');
    if (flag(gw, 'auth-credentials-file') === undefined) {
      expect(flag(gw, 'auth-allow-anonymous')).toBe('true');
      expect(services.gateway!.ports).toContain(`127.0.0.1:${port}:${port}`);
      expect(services.gateway!.ports).not.toContain(`${port}:${port}`);
    } else {
      expect(services.gateway!.ports).toContain(`${port}:${port}`);
    }
  });

  it('Prometheus scrapes exactly the metrics ports the services listen on', () => {
    expect(services.prometheus!.volumes).toContain('./prometheus.yml:/etc/prometheus/prometheus.yml:ro');
    const targets = prometheus.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets));
    const expected = ['gateway', 'fleet'].map((name) => {
      const cmd = services[name]!.command!;
      // Listening on all interfaces: another container must reach it.
      expect(flag(cmd, 'metrics-host')).toBe('0.0.0.0');
      return `${name}:${flag(cmd, 'metrics-port')}`;
    });
    expect(targets.sort()).toEqual(expected.sort());
  });
});
