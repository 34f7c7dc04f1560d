/**
 * Starts a real redis-server for a test: on a free port, in a temporary
 * directory, with AOF when a test asks for durability. Uses testcontainers
 * when a Docker engine is reachable and the local redis-server binary
 * otherwise (see docker.ts). Always stop it in afterAll; the process is also
 * killed when the test process exits.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { dockerAvailable } from './docker.js';
import { freePort } from './ports.js';
import { captureOutput, spawnTracked, waitExit, waitForPort } from './process.js';
import { type ServerKind, serverBinary } from './server-kind.js';
import { waitFor } from './streams.js';

export interface RedisServerOptions {
  /** appendonly yes, with this fsync policy. */
  aof?: 'always' | 'everysec';
  /** Extra config directives, e.g. ['maxmemory', '100mb']. */
  args?: string[];
  /** Force the local binary even when Docker is reachable (needed for restart/kill tests). */
  local?: boolean;
  /** Which server (default Redis); see server-kind.ts. */
  server?: ServerKind;
  /** More directives, made again for each attempt to start (ports of its own, e.g. a cluster bus port). */
  freshArgs?: () => Promise<string[]>;
}

/** Attempts to start a server whose port another process took between freePort() and its bind. */
const BIND_ATTEMPTS = 3;

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  readonly kind: ServerKind;
  /** A new client to this server (caller quits it). */
  client(): Redis;
  /** Stops the server (SHUTDOWN semantics: AOF is flushed). */
  stop(): Promise<void>;
  /** Kills the server with SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory (after stop or kill). */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  destroy(): Promise<void>;
}

export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  if (!options.local && (await dockerAvailable())) {
    const { startRedisContainer } = await import('./redis-container.js');
    return startRedisContainer(options);
  }
  return startLocalRedis(options);
}

/**
 * A local redis-server and one client for a whole test file: started in
 * beforeAll, stopped (client first) in afterAll. Read `server` and `client`
 * inside tests, not at module level (they exist once beforeAll ran).
 */
export function useLocalRedis(kind: ServerKind = 'redis'): {
  readonly server: RedisServer;
  readonly client: Redis;
} {
  let server: RedisServer | undefined;
  let client: Redis | undefined;
  beforeAll(async () => {
    server = await startRedis({ local: true, server: kind });
    client = server.client();
  });
  afterAll(async () => {
    client?.disconnect();
    await server?.destroy();
  });
  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('useLocalRedis: read server and client inside tests');
    return v;
  };
  return {
    get server() {
      return started(server);
    },
    get client() {
      return started(client);
    },
  };
}

export async function startLocalRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  // A port found free may be taken before the server binds it (parallel test files, outgoing
  // connections' ephemeral ports): start again on fresh ports then, instead of failing the suite.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startLocalRedisOnce(options, (await options.freshArgs?.()) ?? []);
    } catch (err) {
      if (attempt >= BIND_ATTEMPTS || !/Address already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function startLocalRedisOnce(options: RedisServerOptions, freshArgs: string[]): Promise<RedisServer> {
  const kind = options.server ?? 'redis';
  const binary = serverBinary(kind);
  const dir = mkdtempSync(join(tmpdir(), `fleet-${kind}-`));
  const port = await freePort();
  const host = '127.0.0.1';
  let child: ChildProcess | undefined;

  const args = [
    '--port',
    String(port),
    '--bind',
    host,
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    options.aof ? 'yes' : 'no',
    ...(options.aof ? ['--appendfsync', options.aof] : []),
    '--daemonize',
    'no',
    '--logfile',
    '',
    ...(options.args ?? []),
    ...freshArgs,
  ];

  const start = async () => {
    child = spawnTracked(binary, args);
    const out = captureOutput(child);
    try {
      await waitForPort(port, host);
    } catch (err) {
      throw new Error(`${binary} did not start: ${(err as Error).message}\n${out.text()}`);
    }
  };

  const stopChild = async (signal: 'SIGTERM' | 'SIGKILL') => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await waitExit(child);
  };

  try {
    await start();
  } catch (err) {
    await stopChild('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    host,
    port,
    url: `redis://${host}:${port}`,
    dir,
    kind,
    client: () => new Redis({ host, port, maxRetriesPerRequest: 3, lazyConnect: false }),
    stop: () => stopChild('SIGTERM'),
    kill: () => stopChild('SIGKILL'),
    start,
    destroy: async () => {
      await stopChild('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A local primary with one replica linked to it (the replicated durability tests); destroy both. */
export async function startPrimaryWithReplica(): Promise<{ primary: RedisServer; replica: RedisServer }> {
  const primary = await startLocalRedis();
  // Started as a replica of nothing, then pointed at the primary once both ports are known.
  const replica = await startLocalRedis({ args: ['--replicaof', '127.0.0.1', '0'] });
  const r = replica.client();
  try {
    await r.replicaof('127.0.0.1', primary.port);
    await waitFor(
      async () => (await r.info('replication')).includes('master_link_status:up'),
      10_000,
      'replica link',
    );
  } finally {
    r.disconnect();
  }
  return { primary, replica };
}
