/**
 * Every Lua script the project ships loads on every tested server (Redis 7,
 * Valkey 8): a script one server refuses to compile would otherwise surface only
 * as a failing append or command in a user's deployment. A refusal is reported as
 * the typed ScriptError that names the script.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { encodeEnvelope } from '#shared/envelope.js';
import { ScriptError } from '#shared/errors.js';
import { Keys } from '#shared/keys.js';
import { createRedis, waitReady } from '#shared/redis/connect.js';
import { SCRIPT_FILES, scriptErrorOf, scriptSource } from '#shared/redis/scripts.js';
import { TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { forEachServer } from '../harness/server-kind.js';
import { waitFor } from '../harness/streams.js';
import { baseRedisConfig } from '../harness/targets.js';

forEachServer('Lua scripts', (kind) => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedis({ local: true, server: kind });
  });
  afterAll(async () => {
    await server.destroy();
  });

  it.each(SCRIPT_FILES)('%s compiles (SCRIPT LOAD)', async (file) => {
    const client = server.client();
    try {
      const sha = await client.script('LOAD', scriptSource(file));
      expect(sha).toMatch(/^[0-9a-f]{40}$/);
    } finally {
      client.disconnect();
    }
  });

  it('a script the server refuses becomes a ScriptError naming it', async () => {
    const client = server.client();
    try {
      const refused = await client.script('LOAD', '--[[ a [[nested]] comment ]]\nreturn 1').catch((e) => e);
      const err = scriptErrorOf(refused, 'broken');
      expect(err).toBeInstanceOf(ScriptError);
      expect(err?.message).toContain('Redis script broken failed on the server');
      expect(scriptErrorOf(new Error('ECONNREFUSED'), 'broken')).toBeUndefined();
    } finally {
      client.disconnect();
    }
  });

  it('the producer logs a failing script once at error level, keeps the entries and delivers them once it runs', async () => {
    const keys = new Keys(randomPrefix(), 1);
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const admin = server.client();
    const client = createRedis(baseRedisConfig(server.url), { failFast: true });
    await waitReady(client, 'test', 10_000);
    // The sequence state under the wrong type makes appendTelemetry raise inside the server.
    await admin.set(keys.telemetrySeqState(0), 'not a hash');
    const producer = new TelemetryProducer(client, keys, { ...producerOptions(), lingerMs: 2 }, { logger });
    try {
      for (let seq = 1; seq <= 5; seq++)
        producer.offer(encodeEnvelope({ deviceId: 'dev-script', seq, time: seq, type: 't', payload: seq }));
      await waitFor(async () => producer.totals.failedBatches >= 3, 10_000, 'retries of the failing batch');
      const errors = lines.filter((l) => l.level === 50);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ script: 'appendTelemetry' });
      expect(String(errors[0]?.msg)).toContain('Redis script appendTelemetry failed on the server');
      await admin.del(keys.telemetrySeqState(0));
      await waitFor(
        async () => (await admin.xlen(keys.telemetryStream(0))) === 5,
        10_000,
        'delivered after the fix',
      );
    } finally {
      await producer.close(2000).catch(() => undefined);
      client.disconnect();
      admin.disconnect();
    }
  });
});
