#!/usr/bin/env node
/** `agent`: the device agent's command line. */
import { exitWithError, startProgram, stopOnSignals } from '#shared/config/program.js';
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
  stopOnSignals('agent', logger, () => agent.stop());
}

void main();
