/**
 * Redis connection factory: one place that knows how to reach a standalone
 * server or a Redis Cluster, with ACL users and TLS. Reconnects back off
 * exponentially with jitter (capped), so a fleet does not reconnect in lockstep.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { ConfigOf } from '../config/schema.js';
import { RedisUnavailableError } from '../errors.js';
import type { RedisSchema } from './options.js';

export type RedisClient = Redis | Cluster;

export type RedisConnectionConfig = Pick<
  ConfigOf<RedisSchema>,
  | 'redis.url'
  | 'redis.cluster'
  | 'redis.clusterNodes'
  | 'redis.username'
  | 'redis.password'
  | 'redis.tls'
  | 'redis.tlsCaFile'
  | 'redis.tlsCertFile'
  | 'redis.tlsKeyFile'
  | 'redis.tlsRejectUnauthorized'
  | 'redis.connectTimeout'
>;

export interface ConnectOptions {
  /** Name shown in CLIENT LIST, to find a process's connections. */
  connectionName?: string;
  /** Fail commands at once while disconnected instead of queueing them (producers with a journal want this). */
  failFast?: boolean;
  /** Upper bound of the reconnect delay. */
  maxReconnectDelayMs?: number;
  /** Extra ioredis options (tests). */
  extra?: RedisOptions;
}

/** Capped exponential backoff with full jitter: 50 ms, 100 ms, ... up to the cap. */
export function reconnectDelay(attempt: number, capMs: number, random: () => number = Math.random): number {
  const exp = Math.min(capMs, 50 * 2 ** Math.min(attempt, 16));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

function tlsOptions(cfg: RedisConnectionConfig, url: URL): ConnectionOptions | undefined {
  if (!cfg['redis.tls'] && url.protocol !== 'rediss:') return undefined;
  const read = (file: string | undefined) => (file ? readFileSync(file) : undefined);
  return {
    ca: read(cfg['redis.tlsCaFile']),
    cert: read(cfg['redis.tlsCertFile']),
    key: read(cfg['redis.tlsKeyFile']),
    rejectUnauthorized: cfg['redis.tlsRejectUnauthorized'],
    servername: url.hostname,
  };
}

function parseUrl(text: string): URL {
  try {
    const url = new URL(text);
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new Error('bad protocol');
    return url;
  } catch {
    throw new RedisUnavailableError(text, 'redis.url is not a redis:// or rediss:// URL');
  }
}

/** Creates a client; it connects in the background (use `waitReady` to wait for it). */
export function createRedis(cfg: RedisConnectionConfig, options: ConnectOptions = {}): RedisClient {
  const url = parseUrl(cfg['redis.url']);
  const cap = options.maxReconnectDelayMs ?? 5000;
  const common: RedisOptions = {
    username: cfg['redis.username'] ?? (url.username ? decodeURIComponent(url.username) : undefined),
    password: cfg['redis.password'] ?? (url.password ? decodeURIComponent(url.password) : undefined),
    tls: tlsOptions(cfg, url),
    connectTimeout: cfg['redis.connectTimeout'],
    connectionName: options.connectionName,
    retryStrategy: (attempt) => reconnectDelay(attempt, cap),
    // Fail-fast producers hand failed batches to their journal instead of queueing without bound.
    enableOfflineQueue: !options.failFast,
    maxRetriesPerRequest: options.failFast ? 0 : 20,
    // A fail-fast producer retries failed batches itself, in order and idempotently; ioredis
    // resending unanswered commands on a new connection could let them overtake later ones.
    autoResendUnfulfilledCommands: !options.failFast,
    ...options.extra,
  };
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 6379);
  if (!cfg['redis.cluster']) {
    const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
    return new Redis({ ...common, host, port, db });
  }
  const seeds = [
    { host, port },
    ...cfg['redis.clusterNodes'].map((hp) => {
      const i = hp.lastIndexOf(':');
      return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
    }),
  ];
  return new Cluster(seeds, {
    // ioredis always lets node connections queue while they connect; fail-fast applies at the cluster level.
    redisOptions: common,
    clusterRetryStrategy: (attempt) => reconnectDelay(attempt, cap),
    enableOfflineQueue: !options.failFast,
    // Pipelines and scripts here only ever touch one hash slot, so no cross-slot batching is needed.
    scaleReads: 'master',
    // A safety net behind refreshOnRedirection: a slot map that went stale unnoticed heals by itself.
    slotsRefreshInterval: SLOTS_REFRESH_INTERVAL_MS,
  });
}

const SLOTS_REFRESH_INTERVAL_MS = 10_000;

/**
 * ioredis follows a MOVED reply for a single command, but not inside a pipeline whose replies
 * differ (an append MOVED beside a WAIT refused by the same node): it returns the error and
 * keeps its slot map. After a failover, when the old master returns on its address as a
 * replica, every pipelined batch would then go to it and fail until a restart. Callers that
 * get such an error from a pipeline hand it here, so the next attempt goes to the new master.
 */
export function refreshOnRedirection(client: RedisClient, err: unknown): void {
  if (!(client instanceof Cluster)) return;
  const message = err instanceof Error ? err.message : String(err);
  if (
    /^(MOVED|ASK|CLUSTERDOWN|READONLY)\b/.test(message) ||
    message.includes('cannot be used with replica')
  ) {
    client.refreshSlotsCache();
  }
}

/** Waits until the client is ready, or throws RedisUnavailableError with the reason. */
export async function waitReady(client: RedisClient, target: string, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    let lastError = 'no answer';
    const onError = (err: Error) => {
      lastError = err.message;
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new RedisUnavailableError(target, `${lastError} (gave up after ${timeoutMs} ms)`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('error', onError);
    };
    client.on('ready', onReady);
    client.on('error', onError);
  });
}

/** Display form of the target, without credentials. */
export function describeTarget(cfg: Pick<RedisConnectionConfig, 'redis.url' | 'redis.cluster'>): string {
  const url = parseUrl(cfg['redis.url']);
  return `${url.protocol}//${url.host}${cfg['redis.cluster'] ? ' (cluster)' : ''}`;
}
