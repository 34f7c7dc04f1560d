#!/usr/bin/env node
/** `gateway`: the MQTT gateway's command line. */
import { exitWithError, startProgram, stopOnSignals } from '#shared/config/program.js';
import { ConfigError } from '#shared/errors.js';
import { createLogger } from '#shared/log.js';
import { hashPassword } from './auth.js';
import { ENV_PREFIX, type GatewayConfig, gatewaySchema } from './config.js';
import { Gateway } from './gateway.js';
import { projectionFactories } from './projection/factory.js';
import { retentionFactories } from './retention/factory.js';
import type { ServiceFactory } from './services.js';

const USAGE = `Usage: gateway [--config FILE] [--gateway-mode broker|bridge] [--redis-url URL] [options]
       gateway hash-password < password.txt

Brings MQTT-only devices into the partitioned telemetry streams: as their
broker (broker mode) or as a client of an existing broker with a shared
subscription (bridge mode). A QoS 1 publish is acknowledged only once its
entry is in Redis. \`hash-password\` prints the scrypt hash of the password read
from stdin, for the file named by --auth-credentials-file.
Options come from defaults < config file < environment < flags.`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/**
 * Services run inside the gateway process. Retention (gateway/retention) and
 * projection (gateway/projection) plug in here as factories of
 * GatewayService (see gateway/gateway.ts), as does command delivery.
 */
async function services(config: GatewayConfig): Promise<ServiceFactory[]> {
  return [...retentionFactories(config), ...projectionFactories(config)];
}

async function main(): Promise<void> {
  const { config, cli } = startProgram({
    name: 'gateway',
    usage: USAGE,
    schema: gatewaySchema,
    envPrefix: ENV_PREFIX,
    positionals: true,
  });
  const [sub, ...extra] = cli.positionals;
  if (sub !== undefined && (sub !== 'hash-password' || extra.length > 0)) {
    exitWithError(
      'gateway',
      new ConfigError(
        'flags',
        'command line',
        `unexpected argument "${sub === 'hash-password' ? extra[0] : sub}": the only subcommand is hash-password, every option is --name value (run with --help)`,
      ),
    );
  }
  if (sub === 'hash-password') {
    const password = await readStdin();
    process.stdout.write(`${await hashPassword(password)}\n`);
    return;
  }
  const logger = createLogger('gateway', config['log.level']);
  let gateway: Gateway;
  try {
    gateway = new Gateway(config, { logger, services: await services(config) });
    await gateway.start();
  } catch (err) {
    exitWithError('gateway', err);
  }
  stopOnSignals('gateway', logger, () => gateway.stop());
}

void main();
