/** redis-server (or valkey-server) in a container, for machines with a Docker engine (testcontainers). */
import { Redis } from 'ioredis';
import { GenericContainer, type StartedTestContainer } from 'testcontainers';
import type { RedisServer, RedisServerOptions } from './redis-server.js';
import { SERVER_IMAGES } from './server-kind.js';

export async function startRedisContainer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const kind = options.server ?? 'redis';
  const command = [
    kind === 'valkey' ? 'valkey-server' : 'redis-server',
    '--save',
    '',
    '--appendonly',
    options.aof ? 'yes' : 'no',
    ...(options.aof ? ['--appendfsync', options.aof] : []),
    ...(options.args ?? []),
  ];
  const image = new GenericContainer(SERVER_IMAGES[kind]).withCommand(command).withExposedPorts(6379);
  let container: StartedTestContainer = await image.start();
  const host = container.getHost();
  const port = container.getMappedPort(6379);
  return {
    host,
    port,
    url: `redis://${host}:${port}`,
    dir: '/data',
    kind,
    client: () => new Redis({ host, port, maxRetriesPerRequest: 3 }),
    stop: async () => {
      await container.stop({ remove: false });
    },
    kill: async () => {
      await container.stop({ remove: false, timeout: 0 });
    },
    start: async () => {
      container = await image.start();
    },
    destroy: async () => {
      await container.stop();
    },
  };
}
