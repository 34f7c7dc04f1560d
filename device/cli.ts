#!/usr/bin/env node
/** `agent`: the device agent's command line. */
import { exitWithError, startProgram } from '#shared/config/program.js';
import { createLogger } from '#shared/log.js';
import { Agent } from './agent.js';
import { agentSchema, ENV_PREFIX } from './config.js';

const USAGE = `Usage: agent [--config FILE] [--device-id ID] [--redis-url URL] [options]

Samples the configured sensors and publishes their readings as telemetry to
partitioned Redis streams, with batched, idempotent, pipelined appends.
Options come from defaults < config file < environment < flags.`;

async function main(): Promise<void> {
  const { config } = startProgram({
    name: 'agent',
    usage: USAGE,
    schema: agentSchema,
    envPrefix: ENV_PREFIX,
  });
  const logger = createLogger('agent', config['log.level']);
  let agent: Agent;
  try {
    agent = new Agent(config, { logger });
    await agent.start();
  } catch (err) {
    exitWithError('agent', err);
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    agent.stop().then(
      ({ unsent }) => process.exit(unsent > 0 ? 3 : 0),
      (err: unknown) => exitWithError('agent', err),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

void main();
