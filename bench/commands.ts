/**
 * Commands benchmark (issue 3). Round trip = send -> terminal result seen by
 * the sender, at 1, 100 and 1,000 commands/s (open loop: sends are scheduled
 * at the rate, not after the previous reply), for:
 *   commands   `ping`: sendAndWait -> the agent (a child process) -> ledger,
 *              result published once, ack (one script call on this
 *              standalone server: concludeCommand-6.lua) -> the sender's
 *              ResultWatcher. ping is read-only, so it starts as soon as it
 *              is read and its receipt is recorded with its result
 *   ledgered   (100/s) `set-config`: idempotent but with an effect, so the
 *              ledger is asked first (beginCommand-1.lua), one round trip more
 *   journaled  (100/s) a non-idempotent handler: beginCommand, two fsyncs of
 *              the local journal and one of its side-effect file per command
 *   floor      a bare XADD -> XREADGROUP -> XADD ping-pong with no dedup,
 *              responder in its own process too
 * all against one fresh local redis-server in the same run.
 */
import { rmSync } from 'node:fs';
import { Redis } from 'ioredis';
import { ResultWatcher } from '../shared/commands/send.js';
import { Keys } from '../shared/keys.js';
import { type AgentProcess, runScript } from '../test/harness/agent-process.js';
import { startCommandAgent, tempDataDir } from '../test/harness/commands.js';
import { startLocalRedis } from '../test/harness/redis-server.js';

// Floor and commands run in alternating rounds of `count` each, so that a
// machine whose load drifts during the run weighs on both alike.
const RATES = [
  { rate: 1, count: 5, rounds: 2 },
  { rate: 100, count: 400, rounds: 4 },
  { rate: 1000, count: 1000, rounds: 3 },
];

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function openLoop(rate: number, count: number, once: (i: number) => Promise<void>): Promise<number[]> {
  const latencies: number[] = [];
  const start = performance.now() + 20;
  const all: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const at = start + (i * 1000) / rate;
    const wait = at - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const t0 = performance.now();
    all.push(once(i).then(() => void latencies.push(performance.now() - t0)));
  }
  await Promise.all(all);
  return latencies.sort((a, b) => a - b);
}

const round = (n: number) => Math.round(n * 1000) / 1000;

export async function run(): Promise<Record<string, unknown>> {
  const server = await startLocalRedis();
  const client = server.client();
  const dirs: string[] = [];
  const children: AgentProcess[] = [];
  try {
    // Floor: bare ping-pong.
    const requests = 'bench:floor:req';
    const replies = 'bench:floor:rep';
    const responder = runScript('bench/_floor-responder.ts', [String(server.port), requests, replies]);
    children.push(responder);
    for (let i = 0; i < 400 && !responder.output().includes('ready'); i++)
      await new Promise((r) => setTimeout(r, 25));
    const floorWaiters = new Map<string, () => void>();
    const floorReader = new Redis({ host: server.host, port: server.port });
    let floorLast = '0-0';
    let floorRunning = true;
    const floorLoop = (async () => {
      while (floorRunning) {
        const reply = (await floorReader.xread('COUNT', 1000, 'BLOCK', 200, 'STREAMS', replies, floorLast)) as
          | [string, [string, string[]][]][]
          | null;
        for (const [id, fields] of reply?.[0]?.[1] ?? []) {
          floorLast = id;
          floorWaiters.get(fields[1]!)?.();
        }
      }
    })();
    const floorOnce = (i: number) =>
      new Promise<void>((resolve) => {
        const id = `f${i}-${Math.random()}`;
        floorWaiters.set(id, () => {
          floorWaiters.delete(id);
          resolve();
        });
        void client.xadd(requests, '*', 'i', id);
      });

    // The agent.
    const keys = new Keys('bench', 4);
    const dir = tempDataDir();
    dirs.push(dir);
    // The agent's defaults for its reads and claims (the test harness shortens them for crash tests).
    const agent = startCommandAgent(server.url, keys, 'bench-dev', dir, {
      'commands.readCount': 100,
      'commands.blockTime': '2s',
      'commands.claimInterval': '5s',
      'commands.claimIdle': '30s',
    });
    children.push(agent);
    const watcher = new ResultWatcher(client, keys, 200);
    await watcher.start();
    const commandOnce =
      (name: string, args: Record<string, string> = {}) =>
      async () => {
        const { result: r } = await watcher.sendAndWait('bench-dev', { name, args, ttlMs: 60_000 }, 30_000);
        if (r.status !== 'succeeded') throw new Error(`bench command ended ${r.status}: ${r.message}`);
      };
    const setConfig = commandOnce('set-config', { key: 'log.level', value: 'warn' });
    // Warm-up (agent start, script cache, JIT) for both paths.
    await openLoop(200, 200, commandOnce('ping'));
    await openLoop(200, 100, setConfig);
    await openLoop(200, 200, floorOnce);

    const detail: Record<string, Record<string, number>> = {};
    for (const { rate, count, rounds } of RATES) {
      const floor: number[] = [];
      const cmd: number[] = [];
      const ledgered: number[] = [];
      for (let r = 0; r < rounds; r++) {
        floor.push(...(await openLoop(rate, count, floorOnce)));
        cmd.push(...(await openLoop(rate, count, commandOnce('ping'))));
        if (rate === 100) ledgered.push(...(await openLoop(rate, count, setConfig)));
      }
      for (const list of [floor, cmd, ledgered]) list.sort((a, b) => a - b);
      const row: Record<string, number> = {
        rate_per_s: rate,
        commands: cmd.length,
        p50_ms: round(percentile(cmd, 50)),
        p99_ms: round(percentile(cmd, 99)),
        floor_p50_ms: round(percentile(floor, 50)),
        floor_p99_ms: round(percentile(floor, 99)),
      };
      row.p99_vs_floor = round(row.p99_ms! / row.floor_p99_ms!);
      if (rate === 100) {
        row.ledgered_p50_ms = round(percentile(ledgered, 50));
        row.ledgered_p99_ms = round(percentile(ledgered, 99));
        row.ledgered_vs_floor = round(row.ledgered_p99_ms! / row.floor_p99_ms!);
        const journaled = await openLoop(rate, 2 * count, commandOnce('test.effect'));
        row.journaled_p50_ms = round(percentile(journaled, 50));
        row.journaled_p99_ms = round(percentile(journaled, 99));
      }
      detail[`${rate}_per_s`] = row;
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
    floorRunning = false;
    await floorLoop;
    floorReader.disconnect();
    await watcher.stop();
    const main = detail['100_per_s']!;
    return {
      rate_per_s: 100,
      p50_ms: main.p50_ms,
      p99_ms: main.p99_ms,
      floor_p50_ms: main.floor_p50_ms,
      floor_p99_ms: main.floor_p99_ms,
      p99_vs_floor: main.p99_vs_floor,
      goal_met: (main.p99_ms ?? Infinity) < 5 && (main.p99_vs_floor ?? Infinity) <= 2,
      // The ledgered command (set-config: beginCommand, then conclude) beside ping, same run, same floor.
      set_config_p50_ms: main.ledgered_p50_ms,
      set_config_p99_ms: main.ledgered_p99_ms,
      set_config_vs_floor: main.ledgered_vs_floor,
      set_config_goal_met: (main.ledgered_vs_floor ?? Infinity) <= 2,
      per_rate: detail,
    };
  } finally {
    for (const c of children) await c.kill('SIGKILL').catch(() => undefined);
    client.disconnect();
    await server.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
