/**
 * The gateway in tests: in process (fast, for behaviour) or as a child process
 * (for SIGKILL), with a config built from the gateway's own schema.
 */
import { loadConfig } from '#shared/config/load.js';
import { flagName } from '#shared/config/schema.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import type { BrokerPorts } from '../../gateway/broker.js';
import { ENV_PREFIX, type GatewayConfig, gatewaySchema } from '../../gateway/config.js';
import { Gateway, type GatewayDeps } from '../../gateway/gateway.js';
import { type AgentProcess, runProgram } from './agent-process.js';
import { randomPrefix } from './prefix.js';

export function gatewayConfig(overrides: Record<string, unknown>): GatewayConfig {
  return loadConfig(gatewaySchema, ENV_PREFIX, {
    overrides: { 'broker.port': 0, 'log.level': 'silent', ...overrides },
  });
}

export interface RunningGateway {
  gateway: Gateway;
  /** mqtt://127.0.0.1:<port> of the broker-mode TCP listener (empty in bridge mode). */
  url: string;
  /** Ports of the broker-mode listeners (TCP, TLS, WebSocket), undefined in bridge mode. */
  ports: BrokerPorts | undefined;
  stop(): Promise<void>;
}

export async function startGateway(
  overrides: Record<string, unknown>,
  deps: Partial<GatewayDeps> = {},
): Promise<RunningGateway> {
  const gateway = new Gateway(gatewayConfig(overrides), { logger: silentLogger(), ...deps });
  const ports = await gateway.start();
  return {
    gateway,
    url: ports ? `mqtt://127.0.0.1:${ports.tcp}` : '',
    ports,
    stop: async () => {
      await gateway.stop();
    },
  };
}

export function startGatewayProcess(options: Record<string, string | number | boolean>): AgentProcess {
  const args: string[] = [];
  for (const [key, value] of Object.entries(options)) args.push(`--${flagName(key)}`, String(value));
  return runProgram('gateway', args);
}

/** A gateway child process, resolved once it logs that it started (its broker or bridge is up). */
export async function startGatewayProcessReady(
  options: Record<string, string | number | boolean>,
  timeoutMs = 30_000,
): Promise<AgentProcess> {
  const p = startGatewayProcess(options);
  await p.waitForLog((l) => l.msg === 'gateway started', timeoutMs);
  return p;
}

/** A gateway in process on `redisUrl` in a fresh random key prefix (4 partitions), with its Keys. */
export async function startPrefixedGateway(
  redisUrl: string,
  extra: Record<string, unknown> = {},
): Promise<RunningGateway & { keys: Keys }> {
  const prefix = randomPrefix();
  const gw = await startGateway({
    'redis.url': redisUrl,
    'redis.keyPrefix': prefix,
    'redis.partitions': 4,
    ...extra,
  });
  return { ...gw, keys: new Keys(prefix, 4) };
}
