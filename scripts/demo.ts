/**
 * `npm start`: the demo. Starts a throw-away redis-server (unless REDIS_URL is
 * set), one device agent with simulated sensors, and shows what arrives in the
 * telemetry streams, live. Ctrl-C stops everything and leaves nothing running.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '#shared/config/load.js';
import { decodeEnvelope } from '#shared/envelope.js';
import { describeError } from '#shared/errors.js';
import { createLogger } from '#shared/log.js';
import { createRedis } from '#shared/redis/connect.js';
import { Agent } from '../device/agent.js';
import { agentSchema, ENV_PREFIX } from '../device/config.js';
import { type RedisServer, startLocalRedis } from '../test/harness/redis-server.js';

function haveRedisServer(): boolean {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  let server: RedisServer | undefined;
  let url = process.env.REDIS_URL;
  if (!url) {
    if (!haveRedisServer()) {
      process.stderr.write(
        'demo: no REDIS_URL given and no redis-server on PATH; install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_URL\n',
      );
      process.exit(2);
    }
    server = await startLocalRedis();
    url = server.url;
    process.stdout.write(`started redis-server on ${url} in ${server.dir}\n`);
  }
  const prefix = `demo${Date.now().toString(36)}`;
  const config = loadConfig(agentSchema, ENV_PREFIX, {
    env: process.env,
    overrides: {
      'device.id': 'demo-pi-01',
      'device.dataDir': mkdtempSync(join(tmpdir(), 'demo-agent-')),
      'redis.url': url,
      'redis.keyPrefix': prefix,
      sensors: ['temperature', 'battery', 'gps', 'cpu_temp', 'load', 'memory'],
      'sensors.cpu_temp.interval': 2000,
      'sensors.load.interval': 2000,
      'sensors.memory.interval': 2000,
    },
  });
  const agent = new Agent(config, { logger: createLogger('agent', 'warn') });
  await agent.start();
  const reader = createRedis(config, { connectionName: 'demo-reader' });
  const stream = agent.keys.telemetryStreamFor('demo-pi-01');
  process.stdout.write(`agent demo-pi-01 publishing to ${stream}; Ctrl-C to stop\n\n`);

  const latest = new Map<string, string>();
  const counts = new Map<string, number>();
  let lastId = '0-0';
  let total = 0;
  let running = true;
  const started = Date.now();

  const stop = async () => {
    if (!running) return;
    running = false;
    const { unsent } = await agent.stop();
    reader.disconnect();
    await server?.destroy();
    const seconds = (Date.now() - started) / 1000;
    process.stdout.write(
      `\n\nsummary: ${total} entries in ${seconds.toFixed(1)} s (${(total / seconds).toFixed(1)}/s), ` +
        `${agent.producer.totals.duplicates} duplicates refused, ${agent.droppedEntries} dropped, ${unsent} unsent\n` +
        [...counts].map(([type, n]) => `  ${type.padEnd(12)} ${n}`).join('\n') +
        '\n',
    );
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  while (running) {
    let reply: Array<[string, Array<[string, string[]]>]> | null;
    try {
      reply = (await reader.xread('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', stream, lastId)) as typeof reply;
    } catch (err) {
      if (!running) return; // stopping: the reader was closed under the blocking read
      throw err;
    }
    for (const [, entries] of reply ?? []) {
      for (const [id, fields] of entries) {
        lastId = id;
        const e = decodeEnvelope(fields);
        total++;
        counts.set(e.type, (counts.get(e.type) ?? 0) + 1);
        latest.set(e.type, JSON.stringify(e.payload));
      }
    }
    if (!running) break;
    const rate = total / ((Date.now() - started) / 1000);
    const summary = [...latest].map(([type, p]) => `${type}=${p}`).join('  ');
    process.stdout.write(`\r\x1b[K${total} entries (${rate.toFixed(1)}/s) ${summary.slice(0, 160)}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo: ${describeError(err)}\n`);
  process.exit(1);
});
