/**
 * Prometheus metrics: each program owns a registry (no global state) and can
 * serve it, with a /healthz that answers 503 while the program is dropping,
 * refusing or force-trimming data (shared/health.ts): body
 * `{"healthy":false,"reasons":[{"code","message","count"?,"since"?,"last"?}]}`.
 */
import { createServer, type Server } from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { opt } from './config/schema.js';
import { HEALTHY, type Health } from './health.js';

export { Counter, Gauge, Histogram, Registry };

export const metricsSchema = {
  'metrics.port': opt.integer(0, 'Port of the Prometheus /metrics and /healthz endpoint (0 = off)', {
    min: 0,
    max: 65535,
  }),
  'metrics.host': opt.string('127.0.0.1', 'Address the metrics endpoint listens on'),
} as const;

export function createRegistry(labels: Record<string, string> = {}, withDefaults = true): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  if (withDefaults) collectDefaultMetrics({ register: registry });
  return registry;
}

export type { Health, HealthReason } from './health.js';

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function serveMetrics(
  registry: Registry,
  port: number,
  host: string,
  health: () => Health = () => HEALTHY,
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        })
        .catch((err: Error) => {
          res.writeHead(500);
          res.end(err.message);
        });
    } else if (req.url === '/healthz') {
      const h = health();
      res.writeHead(h.healthy ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(h));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
