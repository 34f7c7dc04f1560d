/**
 * Telemetry benchmark (issue: foundation). In one run, against the same fresh
 * Redis with the same ~120-byte payload:
 *   ceiling                 redis-benchmark XADD, one connection, pipeline depth = agent batch
 *   agent_per_s             the agent's publish path, plain pipelined XADD
 *   agent_idempotent_per_s  the same with idempotent appends (the default)
 * and the ratios of both to the ceiling, plus the agent process's RSS.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startLocalRedis } from '../test/harness/redis-server.js';

const exec = promisify(execFile);
const BATCH = 100;
const IN_FLIGHT = 8;
const COUNT = 400_000;
const PAYLOAD = 120;

async function ceiling(port: number): Promise<number> {
  const payload = JSON.stringify({ x: 'a'.repeat(PAYLOAD - 8) });
  const args = [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-c',
    '1',
    '-P',
    String(BATCH),
    '-n',
    String(COUNT),
    '-q',
  ];
  const { stdout } = await exec(
    'redis-benchmark',
    [
      ...args,
      'XADD',
      'bench:ceiling',
      '*',
      'd',
      'bench-dev',
      's',
      '1',
      't',
      '1700000000000',
      'k',
      'constant',
      'v',
      '1',
      'p',
      payload,
    ],
    { maxBuffer: 1 << 20 },
  );
  const m = /([\d.]+) requests per second/.exec(stdout.replace(/\r/g, '\n'));
  if (!m) throw new Error(`cannot read redis-benchmark output: ${stdout}`);
  return Number(m[1]);
}

async function agent(url: string, idempotent: boolean): Promise<{ perSecond: number; rssMb: number }> {
  const { stdout } = await exec(
    process.execPath,
    [
      '--import',
      'tsx',
      'bench/_telemetry-agent.ts',
      url,
      String(COUNT),
      idempotent ? '1' : '0',
      String(BATCH),
      String(IN_FLIGHT),
      String(PAYLOAD),
    ],
    { maxBuffer: 1 << 20 },
  );
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { perSecond: number; rssMb: number };
}

export async function run(): Promise<Record<string, unknown>> {
  const server = await startLocalRedis();
  try {
    process.stderr.write('redis-benchmark XADD (ceiling)...\n');
    const ceilingPerS = await ceiling(server.port);
    process.stderr.write('agent, plain pipelined XADD...\n');
    const raw = await agent(server.url, false);
    process.stderr.write('agent, idempotent appends...\n');
    const idem = await agent(server.url, true);
    return {
      ceiling_per_s: Math.round(ceilingPerS),
      agent_per_s: Math.round(raw.perSecond),
      agent_idempotent_per_s: Math.round(idem.perSecond),
      ratio: raw.perSecond / ceilingPerS,
      ratio_idempotent: idem.perSecond / ceilingPerS,
      rss_mb: Math.max(raw.rssMb, idem.rssMb),
      batch: BATCH,
      in_flight_batches: IN_FLIGHT,
      entries: COUNT,
      payload_bytes: PAYLOAD,
    };
  } finally {
    await server.destroy();
  }
}
