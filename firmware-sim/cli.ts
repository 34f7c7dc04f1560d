#!/usr/bin/env node
/** `sim`: runs a simulated fleet with a live progress line and a summary at the end (docs/firmware-sim.md). */
import { writeFileSync } from 'node:fs';
import { exitWithError, startProgram } from '#shared/config/program.js';
import { createLogger } from '#shared/log.js';
import { ENV_PREFIX, simSchema } from './config.js';
import { type AuditReport, type Fleet, type FleetStats, startFleet } from './fleet.js';

const USAGE = `Usage: sim [--config FILE] [--fleet-agents N] [--fleet-mqtt N] [--fleet-profile drone|environment|constant]
           [--redis-url URL] [--mqtt-url URL] [--faults-... RATE] [options]

Runs N virtual devices in this process: agent devices (the device library with
simulated sensors, appending to Redis) and MQTT-only firmware (connecting to
the gateway at --mqtt-url). Shows a progress line while it runs; on Ctrl-C or
after --fleet-duration it stops, reads the streams back and prints a summary:
sent, acknowledged, lost, duplicates refused.
Options come from defaults < config file < environment (SIM_...) < flags.`;

function progressLine(s: FleetStats, rate: number, seconds: number): string {
  const total = s.byKind.agent.connected + s.byKind.mqtt.connected;
  return (
    `${seconds.toFixed(0).padStart(4)}s  connected ${String(total).padStart(5)} ` +
    `(agent ${s.byKind.agent.connected}, mqtt ${s.byKind.mqtt.connected})  ` +
    `${Math.round(rate).toString().padStart(6)} msg/s  sent ${s.sent}  acked ${s.acked}  ` +
    `errors ${s.errors}  dropped ${s.dropped}`
  );
}

export interface Summary {
  seconds: number;
  devices: { agent: number; mqtt: number };
  offeredPerSecond: number;
  sent: number;
  acked: number;
  ackedPerSecond: number;
  errors: number;
  dropped: number;
  skippedSamples: number;
  byKind: FleetStats['byKind'];
  duplicatesRefused: number;
  faults: FleetStats['faults'];
  audit?: AuditReport;
}

function printSummary(sum: Summary): void {
  const a = sum.audit;
  const lines = [
    '',
    `summary after ${sum.seconds.toFixed(1)} s: ${sum.devices.agent} agent + ${sum.devices.mqtt} MQTT devices`,
    `  sent          ${sum.sent}  (offered ${Math.round(sum.offeredPerSecond)}/s)`,
    `  acknowledged  ${sum.acked}  (${Math.round(sum.ackedPerSecond)}/s)`,
    `  errors        ${sum.errors}   dropped on devices ${sum.dropped}   samples skipped (simulator behind) ${sum.skippedSamples}`,
    `  faults        ${
      Object.entries(sum.faults)
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ') || 'none'
    }`,
  ];
  if (a) {
    lines.push(
      `  read back     stored ${a.stored}, lost ${a.lost}, duplicates stored ${a.duplicates}, ` +
        `sent but unacknowledged ${a.unacked}, stored out of order ${a.storedOutOfOrder}`,
      `  duplicates refused ${sum.duplicatesRefused}   ingest p50 ${a.ingestP50Ms} ms, p99 ${a.ingestP99Ms} ms`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function main(): Promise<void> {
  const { config } = startProgram({ name: 'sim', usage: USAGE, schema: simSchema, envPrefix: ENV_PREFIX });
  const logger = createLogger('firmware-sim', config['log.level']);
  let fleet: Fleet;
  try {
    fleet = await startFleet(config, { logger });
  } catch (err) {
    exitWithError('sim', err);
  }
  const started = performance.now();
  const tty = process.stderr.isTTY === true;
  let lastAcked = 0;
  let lastAt = started;
  const progress = setInterval(() => {
    const now = performance.now();
    const s = fleet.stats();
    const rate = ((s.acked - lastAcked) * 1000) / Math.max(1, now - lastAt);
    lastAcked = s.acked;
    lastAt = now;
    const line = progressLine(s, rate, (now - started) / 1000);
    process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
  }, config['fleet.progressInterval']);

  let stopping = false;
  const finish = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(progress);
    if (tty) process.stderr.write('\n');
    logger.info({ reason }, 'stopping the fleet');
    const seconds = (performance.now() - started) / 1000;
    await fleet.stop();
    const s = fleet.stats();
    const summary: Summary = {
      seconds,
      devices: { agent: config['fleet.agents'], mqtt: config['fleet.mqtt'] },
      offeredPerSecond: s.offeredPerSecond,
      sent: s.sent,
      acked: s.acked,
      ackedPerSecond: s.acked / seconds,
      errors: s.errors,
      dropped: s.dropped,
      skippedSamples: s.skippedSamples,
      byKind: s.byKind,
      duplicatesRefused: s.duplicatesRefused,
      faults: s.faults,
    };
    if (config['fleet.audit']) {
      summary.audit = await fleet.audit();
      // MQTT duplicates are refused by the gateway; none stored means every injected one was refused.
      summary.duplicatesRefused = s.faults.duplicates - summary.audit.duplicates;
    }
    printSummary(summary);
    const file = config['fleet.summaryFile'];
    if (file) writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`);
    process.exit(summary.audit && (summary.audit.lost > 0 || summary.audit.duplicates > 0) ? 3 : 0);
  };
  const run = (reason: string) => finish(reason).catch((err: unknown) => exitWithError('sim', err));
  process.on('SIGINT', () => void run('SIGINT'));
  process.on('SIGTERM', () => void run('SIGTERM'));
  if (config['fleet.duration'] > 0) setTimeout(() => void run('duration'), config['fleet.duration']);
}

void main();
