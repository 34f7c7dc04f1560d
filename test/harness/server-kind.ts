/**
 * The servers the integration suites run on: Redis 7 and Valkey 8 (README "Tested
 * servers"). Suites of the telemetry, command and retention paths run once per kind
 * with `forEachServer` (or `forEachTarget(..., ALL_SERVERS)`), so a script or command
 * one server refuses fails a test rather than a user's deployment.
 *
 * STREAMFLEET_SKIP_VALKEY=1 runs the Redis half only, on a machine without
 * valkey-server (CI installs it, see .ci/run); without it a missing binary fails loudly.
 */
import { spawnSync } from 'node:child_process';
import { describe } from 'vitest';

export type ServerKind = 'redis' | 'valkey';

/** Redis only: suites that test our code's logic, not a server's command set. */
export const REDIS_ONLY: readonly ServerKind[] = ['redis'];

/** Every tested server, unless STREAMFLEET_SKIP_VALKEY is set. */
export const ALL_SERVERS: readonly ServerKind[] = process.env.STREAMFLEET_SKIP_VALKEY
  ? ['redis']
  : ['redis', 'valkey'];

const BINARIES: Record<ServerKind, string> = { redis: 'redis-server', valkey: 'valkey-server' };

/** Container images used when a Docker engine is reachable. */
export const SERVER_IMAGES: Record<ServerKind, string> = { redis: 'redis:7.0', valkey: 'valkey/valkey:8.0' };

const checked = new Set<ServerKind>();

/** The server binary of `kind`; throws with what to do when it is not installed. */
export function serverBinary(kind: ServerKind): string {
  const binary = BINARIES[kind];
  if (!checked.has(kind)) {
    const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0)
      throw new Error(
        `${binary} is not installed: install it (bash .ci/run does, from bookworm-backports for Valkey) ` +
          'or set STREAMFLEET_SKIP_VALKEY=1 to run the Redis half of the suites only',
      );
    checked.add(kind);
  }
  return binary;
}

/** The title of a suite on `kind`: unchanged on Redis, marked on every other server. */
export function titleOn(title: string, kind: ServerKind): string {
  return kind === 'redis' ? title : `${title} [${kind}]`;
}

/** Runs `body` as one describe block per tested server. */
export function forEachServer(title: string, body: (kind: ServerKind) => void): void {
  for (const kind of ALL_SERVERS) describe(titleOn(title, kind), () => body(kind));
}
