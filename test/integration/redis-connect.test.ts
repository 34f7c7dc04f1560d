/**
 * The connection factory against real servers: ACL users with passwords, TLS
 * with a private CA, and the replicated durability level (WAIT).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope } from '#shared/envelope.js';
import { ReplicationError } from '#shared/errors.js';
import { Keys } from '#shared/keys.js';
import { silentLogger } from '#shared/log.js';
import { createRedis, type RedisClient, waitReady } from '#shared/redis/connect.js';
import { TelemetryProducer } from '#shared/telemetry/producer.js';
import { producerOptions } from '#shared/telemetry/producer-options.js';
import { freePort } from '../harness/ports.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startLocalRedis, startPrimaryWithReplica } from '../harness/redis-server.js';
import { baseRedisConfig } from '../harness/targets.js';
import { makeCertificates } from '../harness/tls.js';

const servers: RedisServer[] = [];
const clients: RedisClient[] = [];
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await Promise.all(servers.map((s) => s.destroy()));
});

describe('ACL users', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startLocalRedis({
      args: ['--user', 'default', 'off', '--user', 'agent', 'on', '>s3cret', '~iot:*', '+@all'],
    });
    servers.push(server);
  });

  it('connects with the user name and password from the URL or the options', async () => {
    const viaUrl = createRedis(baseRedisConfig(`redis://agent:s3cret@127.0.0.1:${server.port}`));
    const viaOptions = createRedis({
      ...baseRedisConfig(server.url),
      'redis.username': 'agent',
      'redis.password': 's3cret',
    });
    clients.push(viaUrl, viaOptions);
    await waitReady(viaUrl, 'url', 5000);
    await waitReady(viaOptions, 'options', 5000);
    expect(await viaUrl.acl('WHOAMI')).toBe('agent');
    expect(await viaOptions.set('iot:probe', '1')).toBe('OK');
  });

  it('reports a wrong password clearly', async () => {
    const bad = createRedis(
      { ...baseRedisConfig(`redis://agent:wrong@127.0.0.1:${server.port}`), 'redis.connectTimeout': 1000 },
      { maxReconnectDelayMs: 100 },
    );
    bad.on('error', () => {});
    clients.push(bad);
    await expect(waitReady(bad, server.url, 1500)).rejects.toThrow(/cannot reach Redis at .*WRONGPASS/);
  });
});

describe('TLS', () => {
  it('connects over TLS, verifying the server against the configured CA', async () => {
    const certs = makeCertificates();
    const port = await freePort();
    const server = await startLocalRedis({
      args: [
        '--tls-port',
        String(port),
        '--tls-cert-file',
        certs.cert,
        '--tls-key-file',
        certs.key,
        '--tls-ca-cert-file',
        certs.ca,
        '--tls-auth-clients',
        'no',
      ],
    });
    servers.push(server);
    const client = createRedis({
      ...baseRedisConfig(`rediss://127.0.0.1:${port}`),
      'redis.tlsCaFile': certs.ca,
    });
    clients.push(client);
    await waitReady(client, 'tls', 5000);
    expect(await client.ping()).toBe('PONG');

    const untrusting = createRedis(
      { ...baseRedisConfig(`rediss://127.0.0.1:${port}`), 'redis.connectTimeout': 1000 },
      { maxReconnectDelayMs: 100 },
    );
    untrusting.on('error', () => {});
    clients.push(untrusting);
    await expect(waitReady(untrusting, 'tls', 1500)).rejects.toThrow(/certificate/);
  });
});

describe('replicated durability', () => {
  let primary: RedisServer;
  let replica: RedisServer;
  beforeAll(async () => {
    ({ primary, replica } = await startPrimaryWithReplica());
    servers.push(primary, replica);
  });

  const producerFor = async (replicas: number, onFailed?: (err: Error) => void) => {
    const client = createRedis(baseRedisConfig(primary.url), { failFast: true });
    clients.push(client);
    await waitReady(client, 'primary', 5000);
    const keys = new Keys(randomPrefix(), 2);
    const producer = new TelemetryProducer(
      client,
      keys,
      { ...producerOptions(), durability: 'replicated', replicas, replicaTimeoutMs: 300, lingerMs: 1 },
      {
        logger: silentLogger(),
        hooks: {
          onFailed: (_entries, err) => {
            onFailed?.(err);
            return true; // taken: this test only looks at the failure
          },
        },
      },
    );
    return { keys, producer };
  };

  it('counts a batch as sent only when a replica has it', async () => {
    const { keys, producer } = await producerFor(1);
    producer.offer(encodeEnvelope({ deviceId: 'd-rep', seq: 1, time: 1, type: 't', payload: 1 }));
    await producer.flush();
    expect(producer.totals.appended).toBe(1);
    const onReplica = replica.client();
    expect(await onReplica.xlen(keys.telemetryStreamFor('d-rep'))).toBe(1); // no wait needed: WAIT saw it there
    onReplica.disconnect();
  });

  it('fails the batch with ReplicationError when too few replicas confirm', async () => {
    const errors: Error[] = [];
    const { producer } = await producerFor(2, (err) => errors.push(err));
    producer.offer(encodeEnvelope({ deviceId: 'd-rep2', seq: 1, time: 1, type: 't', payload: 1 }));
    await producer.flush();
    expect(producer.totals.appended).toBe(0);
    expect(errors[0]).toBeInstanceOf(ReplicationError);
    expect(errors[0]?.message).toContain('reached 1 of 2 replicas');
  });
});
