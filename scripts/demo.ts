/**
 * `npm start`: the demo. Starts, with embedded defaults,
 *
 *   1. a throw-away redis-server in a temporary directory (unless REDIS_URL is set),
 *   2. the gateway in this process: its embedded MQTT broker, command delivery, retention, the
 *      latest-state projection and the dashboard,
 *   3. a mixed simulated fleet (firmware-sim): agent devices and MQTT-only firmware, and with
 *      --demo-tasmota N beside them N Tasmota-style vendor devices, taken by the gateway's
 *      tasmota mapping (docs/mappings.md),
 *      --demo-sparkplug N and N Sparkplug B edge nodes of two devices each (docs/sparkplug.md),
 *   4. a control loop that sends a command to a random device every few seconds and prints its result,
 *
 * prints the dashboard's URL and a live progress line, and on Ctrl-C (or
 * --demo-duration) stops everything in order, prints a summary and leaves
 * nothing running. Every port is a free one unless the user sets it.
 */
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { CommandResult } from '#shared/commands/codec.js';
import { ResultWatcher, sendCommand } from '#shared/commands/send.js';
import { loadConfig } from '#shared/config/load.js';
import { exitWithError, startProgram } from '#shared/config/program.js';
import { type ConfigOf, opt } from '#shared/config/schema.js';
import { describeError } from '#shared/errors.js';
import { captureOutput, spawnTracked, waitExit, waitForPort } from '#shared/process/children.js';
import { freePort } from '#shared/process/ports.js';
import { createRedis, type RedisClient } from '#shared/redis/connect.js';
import { type Fleet, startFleet } from '../firmware-sim/fleet.js';
import { ENV_PREFIX as GATEWAY_ENV_PREFIX, gatewaySchema } from '../gateway/config.js';
import { Gateway } from '../gateway/gateway.js';
import { projectionFactories } from '../gateway/projection/factory.js';
import { retentionFactories } from '../gateway/retention/factory.js';

const ENV_PREFIX = 'DEMO';

const demoSchema = {
  'demo.redisUrl': opt.optionalString(
    'Redis to use; when unset, a throw-away redis-server is started in a temporary directory',
    { env: 'REDIS_URL' },
  ),
  'demo.agents': opt.integer(8, 'Agent devices (the device library with simulated sensors)', {
    min: 0,
    max: 10_000,
  }),
  'demo.mqtt': opt.integer(8, 'MQTT-only devices (firmware speaking MQTT to the gateway)', {
    min: 0,
    max: 10_000,
  }),
  'demo.tasmota': opt.integer(
    0,
    'Tasmota-style vendor devices beside the fleet (plugs and climate sensors); the gateway runs --mapping tasmota for them',
    { min: 0, max: 1000 },
  ),
  'demo.sparkplug': opt.integer(
    0,
    'Sparkplug B edge nodes beside the fleet (two devices of 10 metrics each); the gateway takes them in broker mode',
    { min: 0, max: 1000 },
  ),
  'demo.profile': opt.enum(['drone', 'environment', 'constant'], 'drone', 'Signal profile of the fleet'),
  'demo.commandInterval': opt.duration(2000, 'A command to a random device this often (0 = none)', {
    min: 0,
  }),
  'demo.commandTtl': opt.duration(10_000, 'Time to live of the control loop commands', { min: 1000 }),
  'demo.dashboardPort': opt.integer(0, 'Dashboard port (0 = a free port)', { min: 0, max: 65535 }),
  'demo.dashboardHost': opt.string('127.0.0.1', 'Address the dashboard listens on'),
  'demo.brokerPort': opt.integer(0, 'MQTT broker port of the gateway (0 = a free port)', {
    min: 0,
    max: 65535,
  }),
  'demo.keyPrefix': opt.string('', 'Redis key prefix (default: demo-<time>, so runs never mix)'),
  'demo.duration': opt.duration(0, 'Stop by itself after this long (0 = run until Ctrl-C)', { min: 0 }),
  'demo.logFile': opt.optionalString('Where the components log (default: demo.log in a temporary directory)'),
} as const;

type DemoConfig = ConfigOf<typeof demoSchema>;

const USAGE = `Usage: npm start [-- --demo-agents N --demo-mqtt N --demo-tasmota N --demo-sparkplug N --demo-duration 30s ...]

Runs the whole system on this machine: a local redis-server (unless REDIS_URL
is set), the gateway with its MQTT broker and dashboard, a simulated fleet of
agent and MQTT devices (and Tasmota-style vendor devices with --demo-tasmota,
Sparkplug B edge nodes with --demo-sparkplug),
and a control loop sending commands. Open the printed
dashboard URL in a browser. Ctrl-C stops everything and prints a summary.`;

function haveRedisServer(): boolean {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface LocalRedis {
  readonly url: string;
  readonly dir: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * A throw-away redis-server. It runs in its own process group (detached), so
 * the terminal's Ctrl-C reaches only the demo, which stops the fleet and the
 * gateway first and Redis last; the harness also kills it if the demo dies.
 */
async function startThrowawayRedis(): Promise<LocalRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'demo-redis-'));
  const port = await freePort();
  const child = spawnTracked(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
    { detached: true },
  );
  const out = captureOutput(child);
  try {
    await waitForPort(port);
  } catch (err) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`redis-server did not start: ${(err as Error).message}\n${out.text()}`);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    dir,
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await waitExit(child).catch(() => child.kill('SIGKILL'));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Command round trips, for the summary. */
class CommandTally {
  sent = 0;
  readonly byStatus = new Map<string, number>();
  readonly roundTrips: number[] = [];
  timeouts = 0;

  record(r: CommandResult): void {
    this.byStatus.set(r.status, (this.byStatus.get(r.status) ?? 0) + 1);
    if (r.issuedAt !== undefined) this.roundTrips.push(r.finishedAt - r.issuedAt);
  }

  get succeeded(): number {
    return this.byStatus.get('succeeded') ?? 0;
  }

  percentile(p: number): number | undefined {
    if (this.roundTrips.length === 0) return undefined;
    const sorted = [...this.roundTrips].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  }
}

function pickCommand(
  random: () => number,
  deviceKind: string,
): { name: string; args: Record<string, unknown> } {
  if (random() < 0.5) return { name: 'ping', args: {} };
  // Both kinds run battery at 1 Hz in the drone profile; other profiles have other signals.
  const sensor = deviceKind === 'env' ? 'temperature' : 'battery';
  return { name: 'set-interval', args: { sensor, interval: 500 + Math.floor(random() * 4) * 250 } };
}

async function main(): Promise<void> {
  const { config } = startProgram({ name: 'demo', usage: USAGE, schema: demoSchema, envPrefix: ENV_PREFIX });
  await run(config);
}

async function run(config: DemoConfig): Promise<void> {
  const out = (line: string) => process.stdout.write(line);
  const tty = process.stdout.isTTY === true;
  let url = config['demo.redisUrl'];
  if (!url && !haveRedisServer()) {
    process.stderr.write(
      'demo: no REDIS_URL given and no redis-server on PATH; install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_URL\n',
    );
    process.exit(2);
  }
  const workDir = mkdtempSync(join(tmpdir(), 'demo-'));
  const logFile = config['demo.logFile'] ?? join(workDir, 'demo.log');
  // Synchronous writes: the log is small, and a stop at any moment must not lose its last lines.
  const logDest = pino.destination({ dest: logFile, sync: true, mkdir: true });
  const logger = pino({ level: 'info', base: { pid: process.pid } }, logDest);

  let redis: LocalRedis | undefined;
  if (!url) {
    redis = await startThrowawayRedis();
    url = redis.url;
    out(`redis     ${url} (throw-away, in ${redis.dir})\n`);
  } else {
    out(`redis     ${url} (REDIS_URL)\n`);
  }
  const prefix = config['demo.keyPrefix'] || `demo-${Date.now().toString(36)}`;

  // Everything started so far is stopped, in reverse order, by `stop` (also when a later step fails).
  let gateway: Gateway | undefined;
  let fleet: Fleet | undefined;
  let watcher: ResultWatcher | undefined;
  let client: RedisClient | undefined;
  const timers: NodeJS.Timeout[] = [];
  const tally = new CommandTally();
  const started = Date.now();
  let stopping: Promise<void> | undefined;
  let progressShown = false;

  const clearProgress = () => {
    if (tty && progressShown) out('\r\x1b[K');
  };

  const stop = (reason: string, code = 0): Promise<void> => {
    stopping ??= (async () => {
      for (const t of timers) clearInterval(t);
      clearProgress();
      out(`\nstopping (${reason}) ...\n`);
      const stepErrors: string[] = [];
      const step = async (what: string, fn: () => Promise<unknown>) => {
        try {
          await fn();
        } catch (err) {
          stepErrors.push(`${what}: ${describeError(err)}`);
        }
      };
      await step('result watcher', async () => watcher?.stop());
      await step('fleet', async () => fleet?.stop());
      const fleetStats = fleet?.stats();
      const audit = fleet ? await fleet.audit().catch(() => undefined) : undefined;
      // Read once more now that the fleet is quiet, so the summary's stream figures are final.
      const sample = await gateway?.dashboard?.sampler.sample().catch(() => undefined);
      let unsent = 0;
      await step('gateway', async () => {
        if (gateway) unsent = (await gateway.stop()).unsent;
      });
      client?.disconnect();
      await step('redis', async () => redis?.stop());
      const seconds = (Date.now() - started) / 1000;
      // The log stays for reading when something went wrong (or the user named it); otherwise the temp dir goes.
      const keepLog = config['demo.logFile'] !== undefined || stepErrors.length > 0 || code !== 0;
      const p50 = tally.percentile(50);
      const p99 = tally.percentile(99);
      const statuses = [...tally.byStatus].map(([s, n]) => `${n} ${s}`).join(', ') || 'none ended';
      const lines = [
        '',
        `summary after ${seconds.toFixed(1)} s`,
        `  devices      ${fleet?.devices.length ?? 0} (${config['demo.agents']} agents, ${config['demo.mqtt']} MQTT), profile ${config['demo.profile']}`,
        fleet && fleet.tasmota.length > 0
          ? `  tasmota      ${fleet.tasmota.length} vendor devices (mapping tasmota): ${fleet.tasmotaStats().sent} sent, ${fleet.tasmotaStats().acked} acknowledged`
          : '',
        fleet && fleet.sparkplug.length > 0
          ? `  sparkplug    ${fleet.sparkplug.length} edge nodes: ${fleet.sparkplugStats().sent} messages sent, ${fleet.sparkplugStats().acked} acknowledged`
          : '',
        fleetStats
          ? `  telemetry    ${fleetStats.sent} sent, ${fleetStats.acked} acknowledged, ${fleetStats.dropped} dropped on devices, ${fleetStats.errors} device errors`
          : '  telemetry    -',
        sample
          ? `  streams      ${sample.ingested} entries ingested, ${sample.rejected} rejected, ${sample.deadLetters} dead letters`
          : '',
        audit
          ? `  audit        ${audit.lost} lost, ${audit.duplicates} duplicates (every acknowledged reading read back from the streams)`
          : '',
        `  commands     ${tally.sent} sent: ${statuses}${tally.timeouts ? `, ${tally.timeouts} without a result in time` : ''}` +
          (p50 !== undefined ? `; round trip p50 ${p50} ms, p99 ${p99} ms` : ''),
        `  gateway      ${unsent} unsent at stop`,
        keepLog ? `  logs         ${logFile}` : '',
        ...stepErrors.map((e) => `  error        ${e}`),
        '',
      ].filter((l) => l !== '');
      out(`${lines.join('\n')}\n`);
      logDest.flushSync();
      if (!keepLog) rmSync(workDir, { recursive: true, force: true });
      process.exit(stepErrors.length > 0 ? 1 : code);
    })();
    return stopping;
  };
  let firstSignalAt = 0;
  const onSignal = (signal: string) => {
    // `npm start` runs the demo under the tsx CLI, which relays the terminal's SIGINT that the demo also
    // receives itself (same process group): a second signal within a second is the same Ctrl-C.
    const now = Date.now();
    if (firstSignalAt === 0) firstSignalAt = now;
    else if (now - firstSignalAt < 1000) return;
    else {
      // A second Ctrl-C: give up on the orderly stop; the harness's exit hook kills redis-server.
      process.stderr.write('\ndemo: forced exit\n');
      process.exit(130);
    }
    void stop(signal);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  try {
    const gatewayConfig = loadConfig(gatewaySchema, GATEWAY_ENV_PREFIX, {
      overrides: {
        'redis.url': url,
        'redis.keyPrefix': prefix,
        'broker.port': config['demo.brokerPort'],
        'dashboard.port': config['demo.dashboardPort'],
        'dashboard.host': config['demo.dashboardHost'],
        'gateway.id': 'demo-gateway',
        'log.level': 'info',
        // Tasmota-style devices speak their vendor's topics: the built-in mapping takes them.
        ...(config['demo.tasmota'] > 0 ? { mapping: 'tasmota' } : {}),
      },
    });
    // The same services as `npm run gateway`: retention and the latest-state projection the dashboard reads.
    gateway = new Gateway(gatewayConfig, {
      logger: logger.child({ name: 'gateway' }),
      services: [...retentionFactories(gatewayConfig), ...projectionFactories(gatewayConfig)],
    });
    const ports = await gateway.start();
    const brokerUrl = `mqtt://127.0.0.1:${ports?.tcp ?? config['demo.brokerPort']}`;
    out(`gateway   MQTT broker ${brokerUrl}, key prefix "${prefix}"\n`);

    fleet = await startFleet(
      {
        'redis.url': url,
        'redis.keyPrefix': prefix,
        'mqtt.url': brokerUrl,
        'fleet.agents': config['demo.agents'],
        'fleet.mqtt': config['demo.mqtt'],
        'fleet.tasmota': config['demo.tasmota'],
        'fleet.sparkplug': config['demo.sparkplug'],
        'fleet.profile': config['demo.profile'],
        'fleet.idPrefix':
          config['demo.profile'] === 'drone'
            ? 'drone'
            : config['demo.profile'] === 'environment'
              ? 'env'
              : 'load',
        // Every agent takes commands in the demo (each holds one blocking connection; fine for a few).
        'fleet.commandAgents': config['demo.agents'],
      },
      { logger: logger.child({ name: 'fleet' }) },
    );
    out(
      `fleet     ${config['demo.agents']} agent + ${config['demo.mqtt']} MQTT devices (${config['demo.profile']})\n`,
    );
    if (fleet.tasmota.length > 0)
      out(
        `tasmota   ${fleet.tasmota.length} vendor devices (${fleet.tasmota.join(', ')}), gateway --mapping tasmota\n`,
      );
    if (fleet.sparkplug.length > 0)
      out(
        `sparkplug ${fleet.sparkplug.length} edge nodes (${fleet.sparkplug.join(', ')}), devices <node>:d0 and :d1\n`,
      );
    out(`dashboard ${gateway.dashboard?.url ?? '(off)'}\n`);
    out(
      `Ctrl-C stops everything${config['demo.duration'] > 0 ? `; stopping by itself after ${config['demo.duration'] / 1000} s` : ''}\n\n`,
    );

    client = createRedis(gatewayConfig, { connectionName: 'demo-control' });
    client.on('error', () => {
      // reconnects; a failed send is reported on its own line
    });
    watcher = new ResultWatcher(client, gateway.keys);
    await watcher.start();

    const devices = fleet.devices;
    let rng = 0x9e3779b9;
    const random = () => {
      // xorshift32: repeatable picks, no dependency
      rng ^= rng << 13;
      rng ^= rng >>> 17;
      rng ^= rng << 5;
      return (rng >>> 0) / 0x1_0000_0000;
    };
    const printAbove = (line: string) => {
      clearProgress();
      out(`${line}\n`);
      progressShown = false;
    };
    const sendOne = async () => {
      if (stopping || !client || !watcher || devices.length === 0) return;
      const device = devices[Math.floor(random() * devices.length)];
      if (!device) return;
      const cmd = pickCommand(random, config['demo.profile'] === 'environment' ? 'env' : 'drone');
      const ttlMs = config['demo.commandTtl'];
      try {
        const sent = await sendCommand(client, gateway!.keys, device.id, { ...cmd, ttlMs });
        tally.sent++;
        const result = await watcher.wait(device.id, sent.command.id, ttlMs + 5000);
        if (stopping) return;
        tally.record(result);
        const took = result.issuedAt !== undefined ? `${result.finishedAt - result.issuedAt} ms` : '';
        const detail =
          result.status === 'succeeded' ? JSON.stringify(result.output ?? null) : (result.message ?? '');
        printAbove(
          `command   ${cmd.name.padEnd(12)} -> ${device.id.padEnd(12)} (${device.kind.padEnd(5)}) ${result.status} ${took}  ${detail.slice(0, 80)}`,
        );
      } catch (err) {
        if (stopping) return;
        tally.timeouts++;
        printAbove(`command   ${cmd.name} -> ${device.id}: ${describeError(err)}`);
      }
    };
    if (config['demo.commandInterval'] > 0) {
      timers.push(setInterval(() => void sendOne(), config['demo.commandInterval']));
    }

    const progress = () => {
      if (stopping || !fleet) return;
      const s = fleet.stats();
      const sample = gateway?.dashboard?.history.latest();
      const line =
        `devices ${s.connected}/${devices.length} connected | ` +
        `${sample ? sample.ingestedPerS : 0} msg/s ingested (${s.acked} acked) | ` +
        `commands ${tally.sent} sent, ${tally.succeeded} succeeded | ` +
        `lag ${sample?.lag ?? '?'} pending ${sample ? sample.pending + sample.gatewayPending : '?'}`;
      if (tty) out(`\r\x1b[K${line.slice(0, Math.max(40, (process.stdout.columns ?? 200) - 1))}`);
      else out(`${line}\n`);
      progressShown = true;
    };
    timers.push(setInterval(progress, 1000));
    if (config['demo.duration'] > 0) {
      timers.push(
        setTimeout(
          () => void stop(`--demo-duration ${config['demo.duration'] / 1000} s`),
          config['demo.duration'],
        ),
      );
    }
  } catch (err) {
    process.stderr.write(`demo: ${describeError(err)}\n`);
    await stop('start failed', 1);
  }
}

main().catch((err: unknown) => exitWithError('demo', err));
