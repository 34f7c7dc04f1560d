/**
 * The dashboard: a web page and its JSON API, served by the gateway process
 * (a GatewayService, started when `dashboard.port` is not -1). Everything the
 * page loads comes from this server: three static files (static/) and the
 * API (api.ts); the Content-Security-Policy forbids anything else, so the
 * page works offline and leaks nothing to third parties.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { durabilityOf } from '#shared/telemetry/producer-options.js';
import type { GatewayContext, GatewayService } from '../services.js';
import { type ApiContext, ApiError, handleApi, readJsonBody } from './api.js';
import { FleetReader } from './fleet.js';
import { MetricsSampler, type Ring, type Sample } from './history.js';
import type { DashboardOptions } from './options.js';

const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export class DashboardService implements GatewayService {
  readonly name = 'dashboard';
  readonly sampler: MetricsSampler;
  private readonly api: ApiContext;
  private readonly files = new Map<string, Buffer>();
  private server: Server | undefined;
  private boundPort = 0;

  constructor(
    private readonly ctx: GatewayContext,
    private readonly options: DashboardOptions,
  ) {
    this.sampler = new MetricsSampler(
      {
        client: ctx.client,
        keys: ctx.keys,
        clock: ctx.clock,
        gatewayPending: () => ctx.ingestor.pending,
        onError: (err) => ctx.logger.debug({ error: err.message }, 'dashboard sample failed'),
      },
      options.historySize,
      options.sampleIntervalMs,
    );
    this.api = {
      client: ctx.client,
      keys: ctx.keys,
      fleet: new FleetReader(ctx.client, ctx.keys, () => ctx.clock.now()),
      history: this.sampler.history,
      maxDevices: options.maxDevices,
      commandTtlMs: options.commandTtlMs,
      durability: durabilityOf(ctx.config),
    };
  }

  get history(): Ring<Sample> {
    return this.sampler.history;
  }

  /** The port it listens on (after start). */
  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
    return `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${this.boundPort}/`;
  }

  async start(): Promise<void> {
    const dir = new URL('./static/', import.meta.url);
    for (const { file } of Object.values(STATIC)) {
      if (!this.files.has(file)) this.files.set(file, readFileSync(new URL(file, dir)));
    }
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => resolve());
    });
    const address = server.address();
    this.boundPort = typeof address === 'object' && address ? address.port : this.options.port;
    this.server = server;
    this.sampler.start();
    this.ctx.logger.info({ url: this.url }, 'dashboard listening');
  }

  async stop(): Promise<void> {
    this.sampler.stop();
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Browsers keep connections alive; close() alone would wait for them.
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://dashboard');
    } catch {
      return this.json(res, 400, { error: { code: 'BAD_URL', message: 'malformed request URL' } });
    }
    const asset = STATIC[url.pathname];
    if (asset) {
      if (method !== 'GET' && method !== 'HEAD')
        return this.json(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: 'GET only' } });
      const body = this.files.get(asset.file);
      res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-cache', ...SECURITY_HEADERS });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204, SECURITY_HEADERS);
      res.end();
      return;
    }
    if (!url.pathname.startsWith('/api/')) {
      return this.json(res, 404, {
        error: { code: 'NOT_FOUND', message: `no page ${url.pathname}; the dashboard is at /` },
      });
    }
    try {
      const out = await handleApi(this.api, method, url, () => readJsonBody(req));
      this.json(res, out.status, out.body);
    } catch (err) {
      if (err instanceof ApiError) {
        this.json(res, err.status, {
          error: { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) },
        });
      } else if (err instanceof URIError) {
        this.json(res, 400, {
          error: { code: 'BAD_URL', message: 'malformed percent-encoding in the path' },
        });
      } else {
        this.ctx.logger.warn(
          { path: url.pathname, error: (err as Error).message },
          'dashboard request failed',
        );
        this.json(res, 503, {
          error: { code: 'UNAVAILABLE', message: `could not read from Redis: ${(err as Error).message}` },
        });
      }
    }
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    if (res.headersSent) return;
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      ...SECURITY_HEADERS,
    });
    res.end(JSON.stringify(body));
  }
}
