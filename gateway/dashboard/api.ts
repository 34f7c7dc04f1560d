/**
 * The dashboard's JSON API: every input validated, every response bounded.
 *
 *   GET  /api/fleet?offset=0&limit=100&q=drone   devices, latest state, last seen
 *   GET  /api/metrics-history?last=300           the newest samples for the charts, oldest first (at most the ring's size)
 *   GET  /api/results?limit=50                   newest command results first
 *   POST /api/commands                           {deviceId, name, args?, ttlMs?} -> 202 {commandId, ...}
 *   GET  /api/commands/<deviceId>/<commandId>    the command's ledger: status and result
 *
 * Errors are JSON `{error: {code, message, field?}}` with 400 (bad input),
 * 404 (unknown device or path), 405, 413 (body too large) or 415 (not JSON).
 */
import type { IncomingMessage } from 'node:http';
import {
  COMMAND_ID_PATTERN,
  COMMAND_NAME_PATTERN,
  type CommandResult,
  decodeResult,
} from '#shared/commands/codec.js';
import { commandStatus, sendCommand } from '#shared/commands/send.js';
import { FleetError, ValidationError } from '#shared/errors.js';
import { DEVICE_ID_PATTERN, type Keys } from '#shared/keys.js';
import type { RedisClient } from '#shared/redis/connect.js';
import type { ReplicaWait } from '#shared/redis/durability.js';
import type { FleetReader } from './fleet.js';
import type { Ring, Sample } from './history.js';

/** A request the API refuses; `status` is the HTTP status, the message says what to change. */
export class ApiError extends FleetError {
  readonly code: string;
  constructor(
    readonly status: number,
    code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.code = code;
  }
}

/** Largest request body accepted: a command's args are at most 8 KiB, plus the envelope around them. */
export const MAX_BODY_BYTES = 16 * 1024;
/** Bounds of the list endpoints. */
export const MAX_RESULTS = 200;
export const MIN_TTL_MS = 1000;
export const MAX_TTL_MS = 3_600_000;

export interface ApiContext {
  readonly client: RedisClient;
  readonly keys: Keys;
  readonly fleet: FleetReader;
  readonly history: Ring<Sample>;
  readonly maxDevices: number;
  readonly commandTtlMs: number;
  /** producer.durability: a command is sent once this many replicas have it. */
  readonly durability: ReplicaWait | undefined;
}

export interface ApiResponse {
  readonly status: number;
  readonly body: unknown;
}

/** An integer query parameter within [min, max], or the default when absent. */
export function intParam(
  params: URLSearchParams,
  name: string,
  dflt: number,
  min: number,
  max: number,
): number {
  const raw = params.get(name);
  if (raw === null || raw === '') return dflt;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ApiError(
      400,
      'BAD_PARAMETER',
      `query parameter "${name}" must be an integer in ${min}..${max}, got "${raw}"`,
      name,
    );
  }
  return Number(raw);
}

/** Reads a JSON request body of at most MAX_BODY_BYTES. */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  // Requiring application/json also keeps other web sites from posting here with a plain HTML form
  // (a cross-origin JSON request needs a CORS preflight, which this server never grants).
  if (!/^application\/json\b/i.test(type)) {
    throw new ApiError(
      415,
      'UNSUPPORTED_MEDIA_TYPE',
      `send the command as JSON (Content-Type: application/json), not "${type}"`,
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new ApiError(413, 'BODY_TOO_LARGE', `request body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new ApiError(400, 'BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`);
  }
}

export interface CommandRequest {
  readonly deviceId: string;
  readonly name: string;
  readonly args: Record<string, unknown>;
  readonly ttlMs: number;
}

const COMMAND_REQUEST_FIELDS = new Set(['deviceId', 'name', 'args', 'ttlMs']);

/** Validates a POST /api/commands body; the message of each refusal names the field and what it must be. */
export function parseCommandRequest(body: unknown, defaultTtlMs: number): CommandRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiError(400, 'BAD_REQUEST', 'body must be a JSON object {deviceId, name, args?, ttlMs?}');
  }
  const o = body as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!COMMAND_REQUEST_FIELDS.has(key)) {
      throw new ApiError(
        400,
        'UNKNOWN_FIELD',
        `unknown field "${key}" (expected deviceId, name, args, ttlMs)`,
        key,
      );
    }
  }
  const { deviceId, name, args, ttlMs } = o;
  if (typeof deviceId !== 'string' || !DEVICE_ID_PATTERN.test(deviceId)) {
    throw new ApiError(
      400,
      'BAD_FIELD',
      `deviceId must match ${DEVICE_ID_PATTERN}, got ${JSON.stringify(deviceId ?? null)}`,
      'deviceId',
    );
  }
  if (typeof name !== 'string' || !COMMAND_NAME_PATTERN.test(name)) {
    throw new ApiError(
      400,
      'BAD_FIELD',
      `name must match ${COMMAND_NAME_PATTERN}, got ${JSON.stringify(name ?? null)}`,
      'name',
    );
  }
  if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) {
    throw new ApiError(
      400,
      'BAD_FIELD',
      'args must be a JSON object, e.g. {"sensor":"gps","interval":500}',
      'args',
    );
  }
  if (
    ttlMs !== undefined &&
    (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs < MIN_TTL_MS || ttlMs > MAX_TTL_MS)
  ) {
    throw new ApiError(
      400,
      'BAD_FIELD',
      `ttlMs must be an integer in ${MIN_TTL_MS}..${MAX_TTL_MS} (ms), got ${JSON.stringify(ttlMs)}`,
      'ttlMs',
    );
  }
  return {
    deviceId,
    name,
    args: (args as Record<string, unknown> | undefined) ?? {},
    ttlMs: (ttlMs as number | undefined) ?? defaultTtlMs,
  };
}

/** A result as the page shows it (decoded by the codec; malformed entries are listed as such, not dropped). */
export type ResultView =
  | (CommandResult & { readonly entry: string })
  | { readonly entry: string; readonly malformed: string };

export async function recentResults(client: RedisClient, keys: Keys, limit: number): Promise<ResultView[]> {
  const entries = await client.xrevrange(keys.results(), '+', '-', 'COUNT', limit);
  return entries.map(([entry, fields]): ResultView => {
    try {
      return { entry, ...decodeResult(fields) };
    } catch (err) {
      return { entry, malformed: (err as Error).message };
    }
  });
}

async function isKnownDevice(client: RedisClient, keys: Keys, deviceId: string): Promise<boolean> {
  const [agent, mqtt, seen] = await Promise.all([
    client.sismember(keys.fleet(), deviceId),
    client.sismember(keys.mqttDevices(), deviceId),
    client.hexists(keys.lastSeen(), deviceId),
  ]);
  return agent === 1 || mqtt === 1 || seen === 1;
}

/** Routes one API request. `body` is read lazily (only POST reads it). */
export async function handleApi(
  ctx: ApiContext,
  method: string,
  url: URL,
  body: () => Promise<unknown>,
): Promise<ApiResponse> {
  const path = url.pathname;
  const params = url.searchParams;
  const only = (m: string) => {
    if (method !== m) throw new ApiError(405, 'METHOD_NOT_ALLOWED', `${path} accepts ${m} only`);
  };
  if (path === '/api/fleet') {
    only('GET');
    const limit = intParam(params, 'limit', Math.min(100, ctx.maxDevices), 1, ctx.maxDevices);
    const offset = intParam(params, 'offset', 0, 0, 1_000_000);
    const q = params.get('q') ?? '';
    if (q.length > 64)
      throw new ApiError(400, 'BAD_PARAMETER', 'query parameter "q" must be at most 64 characters', 'q');
    return { status: 200, body: await ctx.fleet.read({ offset, limit, filter: q || undefined }) };
  }
  if (path === '/api/metrics-history') {
    only('GET');
    // "At most this many": a page asking for a longer window than the ring holds gets what there is.
    const last = intParam(params, 'last', ctx.history.capacity, 1, 1_000_000);
    return { status: 200, body: { capacity: ctx.history.capacity, samples: ctx.history.last(last) } };
  }
  if (path === '/api/results') {
    only('GET');
    const limit = intParam(params, 'limit', 50, 1, MAX_RESULTS);
    return { status: 200, body: { results: await recentResults(ctx.client, ctx.keys, limit) } };
  }
  if (path === '/api/commands') {
    only('POST');
    const req = parseCommandRequest(await body(), ctx.commandTtlMs);
    if (!(await isKnownDevice(ctx.client, ctx.keys, req.deviceId))) {
      // A typo would otherwise sit queued until it expires; say so at once.
      throw new ApiError(
        404,
        'UNKNOWN_DEVICE',
        `no device "${req.deviceId}" has registered or been seen (check the id in the fleet list)`,
        'deviceId',
      );
    }
    let sent: Awaited<ReturnType<typeof sendCommand>>;
    try {
      sent = await sendCommand(ctx.client, ctx.keys, req.deviceId, {
        name: req.name,
        args: req.args,
        ttlMs: req.ttlMs,
        durability: ctx.durability,
      });
    } catch (err) {
      // The codec's own checks (args size, ...) come back as 400 with its message.
      if (err instanceof ValidationError) throw new ApiError(400, 'BAD_FIELD', err.message, err.field);
      throw err;
    }
    return {
      status: 202,
      body: {
        commandId: sent.command.id,
        deviceId: sent.deviceId,
        name: sent.command.name,
        deadline: sent.command.deadline,
        duplicate: sent.duplicate,
      },
    };
  }
  const m = /^\/api\/commands\/([^/]+)\/([^/]+)$/.exec(path);
  if (m) {
    only('GET');
    const deviceId = decodeURIComponent(m[1] ?? '');
    const commandId = decodeURIComponent(m[2] ?? '');
    if (!DEVICE_ID_PATTERN.test(deviceId))
      throw new ApiError(400, 'BAD_PARAMETER', `device id must match ${DEVICE_ID_PATTERN}`, 'deviceId');
    if (!COMMAND_ID_PATTERN.test(commandId))
      throw new ApiError(400, 'BAD_PARAMETER', `command id must match ${COMMAND_ID_PATTERN}`, 'commandId');
    const view = await commandStatus(ctx.client, ctx.keys, deviceId, commandId);
    if (view.status === 'none')
      throw new ApiError(
        404,
        'UNKNOWN_COMMAND',
        `no command "${commandId}" for device "${deviceId}" (or its ledger has expired)`,
      );
    return { status: 200, body: { deviceId, commandId, ...view } };
  }
  throw new ApiError(404, 'NOT_FOUND', `no API endpoint ${path}`);
}
