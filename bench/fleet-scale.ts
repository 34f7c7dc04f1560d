/**
 * `npm run bench -- fleet-scale`: how the gateway's cost grows with the fleet.
 *
 * The fleet run of bench/fleet.ts (half agents, half MQTT drones, 100
 * commands/s, the gateway's defaults) at 250, 500, 1,000, 2,000 and 4,000
 * devices, shorter runs, one after another on fresh processes. For each step:
 *
 *   offered_per_s, ingested_per_s      what the profile offers and what was stored, per second
 *   gateway_cpu_per_1k_msg_s           the gateway's share of one core per 1,000 stored msg/s
 *   gateway_rss_kb_per_device          the gateway's peak resident memory over the fleet size
 *   ingest_p99_ms, command_p99_ms      device time -> entry, send -> result
 *   cpu_gateway, cpu_sim, cpu_redis    share of one core each, to see what saturates the 2 cores
 *
 * and a chart of them, bench/results/fleet-scale.png (docs/img/fleet-scale.png is one committed run).
 * Env: FLEET_SCALE_STEPS (250,500,1000,2000,4000), FLEET_SCALE_SECONDS (30), FLEET_BENCH_COMMANDS (100).
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderPanels } from './_chart.js';
import { fleetRunFromEnv, runFleet } from './fleet.js';

const STEPS = (process.env.FLEET_SCALE_STEPS ?? '250,500,1000,2000,4000')
  .split(',')
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 1);
const SECONDS = Number(process.env.FLEET_SCALE_SECONDS) > 0 ? Number(process.env.FLEET_SCALE_SECONDS) : 30;

interface Step {
  devices: number;
  offered_per_s: number;
  ingested_per_s: number;
  ingested_vs_offered: number;
  gateway_cpu_per_1k_msg_s: number;
  gateway_rss_mb: number;
  gateway_rss_kb_per_device: number;
  ingest_p99_ms: number;
  command_p99_ms: number;
  lost: number;
  duplicates: number;
  cpu_gateway: number;
  cpu_sim: number;
  cpu_redis: number;
}

export async function run(): Promise<Record<string, unknown>> {
  const steps: Step[] = [];
  for (const devices of STEPS) {
    process.stderr.write(
      `fleet-scale: ${devices} devices for ${SECONDS} s (step ${steps.length + 1} of ${STEPS.length})\n`,
    );
    const r = (await runFleet({ ...fleetRunFromEnv(), devices, seconds: SECONDS })) as Record<string, number>;
    const step: Step = {
      devices,
      offered_per_s: r.offered_per_s!,
      ingested_per_s: r.ingested_per_s!,
      ingested_vs_offered: r.ingested_vs_offered!,
      gateway_cpu_per_1k_msg_s: r.cpu_gateway! / (r.ingested_per_s! / 1000),
      gateway_rss_mb: r.gateway_rss_mb!,
      gateway_rss_kb_per_device: (r.gateway_rss_mb! * 1024) / devices,
      ingest_p99_ms: r.ingest_p99_ms!,
      command_p99_ms: r.command_p99_ms!,
      lost: r.lost!,
      duplicates: r.duplicates!,
      cpu_gateway: r.cpu_gateway!,
      cpu_sim: r.cpu_sim!,
      cpu_redis: r.cpu_redis!,
    };
    steps.push(step);
    process.stderr.write(`${JSON.stringify(step)}\n`);
  }
  mkdirSync(fileURLToPath(new URL('./results/', import.meta.url)), { recursive: true });
  const chart = fileURLToPath(new URL('./results/fleet-scale.png', import.meta.url));
  const col = (k: keyof Step) => steps.map((s) => s[k]);
  renderPanels(
    chart,
    `Fleet scale, gateway defaults, ${SECONDS} s per step, 100 commands/s`,
    { name: 'devices', values: steps.map((s) => String(s.devices)) },
    [
      {
        title: 'Throughput',
        unit: 'msg/s',
        series: [
          { name: 'offered', values: col('offered_per_s') },
          { name: 'ingested', values: col('ingested_per_s') },
        ],
      },
      {
        title: 'Gateway CPU per 1k msg/s',
        unit: 'share of a core',
        series: [{ name: 'gateway CPU / 1k msg/s', values: col('gateway_cpu_per_1k_msg_s') }],
      },
      {
        title: 'Gateway memory per device',
        unit: 'KB RSS',
        series: [{ name: 'RSS / device', values: col('gateway_rss_kb_per_device') }],
      },
      {
        title: 'Latency p99',
        unit: 'ms',
        series: [
          { name: 'ingest p99', values: col('ingest_p99_ms') },
          { name: 'command p99', values: col('command_p99_ms') },
        ],
      },
      {
        title: 'CPU by process',
        unit: 'share of a core',
        series: [
          { name: 'gateway', values: col('cpu_gateway') },
          { name: 'simulator', values: col('cpu_sim') },
          { name: 'redis', values: col('cpu_redis') },
        ],
      },
    ],
  );
  return { seconds_per_step: SECONDS, steps, chart };
}
