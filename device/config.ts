/** The agent's options: every key, its default, its environment variable and flag (docs/config.md). */
import { type ConfigOf, opt } from '#shared/config/schema.js';
import { healthSchema } from '#shared/health.js';
import { logSchema } from '#shared/log.js';
import { metricsSchema } from '#shared/metrics.js';
import { redisSchema } from '#shared/redis/options.js';
import { producerSchema } from '#shared/telemetry/producer-options.js';
import { commandSchema } from './commands/options.js';
import { journalSchema } from './journal/options.js';

export const ENV_PREFIX = 'AGENT';

export const agentSchema = {
  'device.id': opt.string('', 'Device id (required): letters, digits and ._:@- , at most 64 characters'),
  'device.tags': opt.list([], 'Tags for fleet-wide commands, e.g. site-a,drone'),
  'device.dataDir': opt.string(
    './agent-data',
    'Directory for the sequence file (and the journal): keep it on persistent storage',
  ),
  'device.sequenceBlock': opt.integer(1000, 'Sequence numbers reserved per write of the sequence file', {
    min: 1,
  }),
  sensors: opt.list(
    ['temperature', 'battery', 'gps', 'cpu_temp', 'load', 'memory'],
    'Sensors to run (temperature, battery, gps, cpu_temp, load, memory, constant)',
  ),
  'sensors.temperature.interval': opt.duration(1000, 'Sampling interval of the simulated temperature', {
    min: 1,
  }),
  'sensors.battery.interval': opt.duration(1000, 'Sampling interval of the simulated battery', { min: 1 }),
  'sensors.gps.interval': opt.duration(100, 'Sampling interval of the simulated GPS track', { min: 1 }),
  'sensors.cpu_temp.interval': opt.duration(5000, 'Sampling interval of /sys/class/thermal CPU temperature', {
    min: 1,
  }),
  'sensors.load.interval': opt.duration(5000, 'Sampling interval of /proc/loadavg', { min: 1 }),
  'sensors.memory.interval': opt.duration(5000, 'Sampling interval of /proc/meminfo', { min: 1 }),
  'sensors.constant.interval': opt.duration(10, 'Sampling interval of the constant-rate load sensor', {
    min: 1,
  }),
  'sensors.constant.payloadBytes': opt.integer(120, 'Payload size of the constant-rate load sensor', {
    min: 2,
    max: 65536,
  }),
  'agent.shutdownTimeout': opt.duration(5000, 'On SIGTERM/SIGINT, how long to flush what the agent holds', {
    min: 0,
  }),
  ...redisSchema,
  ...producerSchema,
  ...commandSchema,
  ...journalSchema,
  ...logSchema,
  ...metricsSchema,
  ...healthSchema,
} as const;

export type AgentSchema = typeof agentSchema;
export type AgentConfig = ConfigOf<AgentSchema>;
