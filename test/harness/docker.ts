/**
 * Whether a Docker engine is reachable. The harness prefers testcontainers
 * then; without one (as on the CI machines) it starts the local binaries.
 * Set FLEET_TEST_LOCAL=1 to force local binaries.
 */
import { existsSync } from 'node:fs';
import { request } from 'node:http';

let cached: Promise<boolean> | undefined;

export function dockerAvailable(): Promise<boolean> {
  if (process.env.FLEET_TEST_LOCAL === '1') return Promise.resolve(false);
  cached ??= probe();
  return cached;
}

function probe(): Promise<boolean> {
  if (process.env.DOCKER_HOST?.startsWith('tcp://')) return Promise.resolve(true);
  const socketPath = process.env.DOCKER_HOST?.replace(/^unix:\/\//, '') ?? '/var/run/docker.sock';
  if (!existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('error', () => resolve(false));
    req.once('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}
