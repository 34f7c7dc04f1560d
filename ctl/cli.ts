#!/usr/bin/env node
/**
 * `ctl`: the operator's command line. Each subcommand lives in its own module
 * and is loaded only when used; add new ones to SUBCOMMANDS.
 */
import { exitWithError, startProgram } from '#shared/config/program.js';
import { UsageError } from '#shared/errors.js';
import { Keys } from '#shared/keys.js';
import { createRedis, describeTarget, waitReady } from '#shared/redis/connect.js';
import { ctlSchema, ENV_PREFIX } from './config.js';
import type { CtlCommand } from './context.js';

const SUBCOMMANDS: Record<string, { summary: string; load: () => Promise<CtlCommand> }> = {
  command: {
    summary: 'send a control command and wait for its result; show its status',
    load: async () => (await import('./command.js')).default,
  },
  streams: {
    summary: 'every stream: length, memory, consumer groups, lag, pending, oldest pending age',
    load: async () => (await import('./streams.js')).default,
  },
  device: {
    summary: 'a device: latest state, last seen, recent telemetry and commands',
    load: async () => (await import('./device.js')).default,
  },
  dlq: {
    summary: 'dead-lettered commands: list, replay <id|all>',
    load: async () => (await import('./dlq.js')).default,
  },
};

const USAGE = `Usage: ctl <command> [arguments] [--json] [--redis-url URL]

Commands:
${Object.entries(SUBCOMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join('\n')}`;

async function main(): Promise<void> {
  const { config, cli } = startProgram({
    name: 'ctl',
    usage: USAGE,
    schema: ctlSchema,
    envPrefix: ENV_PREFIX,
    positionals: true,
  });
  const [name, ...args] = cli.positionals;
  const sub = name ? SUBCOMMANDS[name] : undefined;
  if (!sub)
    exitWithError('ctl', new UsageError(name ? `unknown command "${name}"` : 'no command given', USAGE));
  const client = createRedis(config, { connectionName: 'ctl' });
  client.on('error', () => {
    // reported by waitReady / the failing command
  });
  try {
    await waitReady(client, describeTarget(config), config['redis.connectTimeout']);
    const keys = new Keys(config['redis.keyPrefix'], config['redis.partitions']);
    const run = await sub.load();
    const code = await run(
      { config, client, keys, json: config.json, out: (t) => process.stdout.write(`${t}\n`) },
      args,
    );
    client.disconnect();
    process.exit(code);
  } catch (err) {
    client.disconnect();
    exitWithError('ctl', err);
  }
}

void main();
