/** The dashboard's options (part of the gateway's schema, gateway/config.ts; docs/dashboard.md). */
import { opt } from '#shared/config/schema.js';

export const dashboardSchema = {
  'dashboard.port': opt.integer(
    -1,
    'Port of the web dashboard and its JSON API (-1 = off, 0 = pick a free port)',
    {
      min: -1,
      max: 65535,
    },
  ),
  // No authentication: the page can send commands, so it listens on loopback unless told otherwise.
  'dashboard.host': opt.string(
    '127.0.0.1',
    'Address the dashboard listens on; it has no login, so expose it only behind an authenticating proxy',
  ),
  'dashboard.sampleInterval': opt.duration(
    1000,
    'How often stream lengths, group lag and pending counts are sampled',
    {
      min: 100,
    },
  ),
  'dashboard.historySize': opt.integer(
    600,
    'Samples kept for the charts (a ring buffer: 600 at 1 s = 10 minutes)',
    {
      min: 10,
      max: 100_000,
    },
  ),
  'dashboard.maxDevices': opt.integer(
    500,
    'Most devices one fleet request returns (the page shows a count of the rest)',
    { min: 1, max: 10_000 },
  ),
  'dashboard.commandTtl': opt.duration(
    30_000,
    'Time to live of a command sent from the page when it names none',
    {
      min: 1000,
    },
  ),
} as const;

/** Resolved options the dashboard runs with. */
export interface DashboardOptions {
  readonly port: number;
  readonly host: string;
  readonly sampleIntervalMs: number;
  readonly historySize: number;
  readonly maxDevices: number;
  readonly commandTtlMs: number;
}

type DashboardConfig = {
  readonly [K in keyof typeof dashboardSchema]: (typeof dashboardSchema)[K]['default'];
};

export function dashboardOptions(config: DashboardConfig): DashboardOptions {
  return {
    port: config['dashboard.port'],
    host: config['dashboard.host'],
    sampleIntervalMs: config['dashboard.sampleInterval'],
    historySize: config['dashboard.historySize'],
    maxDevices: config['dashboard.maxDevices'],
    commandTtlMs: config['dashboard.commandTtl'],
  };
}
