/**
 * The simulator's options: every key, its default, its environment variable
 * (SIM_...) and flag. The library (startFleet) and the CLI read the same
 * schema, so a default is written once.
 */
import { type ConfigOf, opt } from '#shared/config/schema.js';
import { logSchema } from '#shared/log.js';
import { metricsSchema } from '#shared/metrics.js';
import { redisSchema } from '#shared/redis/options.js';
import { producerSchema } from '#shared/telemetry/producer-options.js';
import { commandSchema } from '../device/index.js';

export const ENV_PREFIX = 'SIM';

export const PROFILES = ['drone', 'environment', 'constant'] as const;
export type ProfileName = (typeof PROFILES)[number];

export const simSchema = {
  'fleet.agents': opt.integer(
    10,
    'Agent devices: the device library with simulated sensors, one shared producer',
    {
      min: 0,
      max: 100_000,
    },
  ),
  'fleet.mqtt': opt.integer(10, 'MQTT-only devices: one MQTT.js connection each, speaking as firmware does', {
    min: 0,
    max: 100_000,
  }),
  'fleet.tasmota': opt.integer(
    0,
    'Tasmota-style vendor devices (tele/<topic>/SENSOR and STATE JSON, no sequence numbers): the gateway takes them with --mapping tasmota',
    { min: 0, max: 10_000 },
  ),
  'fleet.sparkplug': opt.integer(
    0,
    'Sparkplug B edge nodes (protobuf NBIRTH/DBIRTH/DDATA by alias, two devices of 10 metrics each, NDEATH will): the gateway takes them with sparkplug.enabled',
    { min: 0, max: 10_000 },
  ),
  'fleet.idPrefix': opt.string('sim', 'Device ids are <prefix>-a-<n> (agents) and <prefix>-m-<n> (MQTT)'),
  'fleet.profile': opt.enum(PROFILES, 'drone', 'Signal profile: drone, environment or constant'),
  'fleet.commandAgents': opt.integer(
    16,
    'Agent devices that run the command worker (each holds one blocking Redis connection; the rest take no commands)',
    { min: 0 },
  ),
  'fleet.dataDir': opt.optionalString(
    'Directory for the command journals of agent devices (default: a temporary directory removed at stop)',
  ),
  'fleet.seqBase': opt.integer(
    0,
    'First sequence number of every device; 0 = the start time in seconds x 1000, so a rerun never reuses numbers',
    { min: 0 },
  ),
  'fleet.rampUp': opt.duration(1000, 'Device starts are spread over this time (no thundering herd)', {
    min: 0,
  }),
  'fleet.tick': opt.duration(10, 'Scheduler tick: every device signal that is due is sampled each tick', {
    min: 1,
    max: 1000,
  }),
  'fleet.duration': opt.duration(0, 'CLI: stop after this long (0 = run until Ctrl-C)', { min: 0 }),
  'fleet.audit': opt.boolean(
    true,
    'CLI: at the end, read the streams back to count lost and duplicate entries',
  ),
  'fleet.summaryFile': opt.optionalString('CLI: also write the summary as JSON to this file'),
  'fleet.progressInterval': opt.duration(1000, 'CLI: how often the progress line is refreshed', { min: 100 }),

  'mqtt.url': opt.string(
    'mqtt://127.0.0.1:1883',
    'Broker the MQTT-only devices connect to (the gateway); a comma-separated list spreads them over several gateways, each reconnection going to the next',
  ),
  'mqtt.queueLimit': opt.integer(
    100,
    'Messages an MQTT device keeps while disconnected (a microcontroller has little RAM); the oldest drop first',
    { min: 1, max: 100_000 },
  ),
  'mqtt.maxInflight': opt.integer(
    16,
    'QoS 1 publishes an MQTT device has unacknowledged at once; more wait in its local queue',
    { min: 1, max: 65535 },
  ),
  'mqtt.reconnectBase': opt.duration(200, 'First reconnect delay; doubles per failed attempt, with jitter', {
    min: 10,
  }),
  'mqtt.reconnectMax': opt.duration(10_000, 'Cap of the reconnect delay', { min: 10 }),
  'mqtt.keepalive': opt.integer(30, 'MQTT keepalive in seconds', { min: 1, max: 65535 }),

  'profile.tasmota.telePeriod': opt.duration(
    2000,
    'Tasmota devices: TelePeriod, how often each publishes SENSOR and STATE (Tasmota defaults to 300 s)',
    { min: 100 },
  ),
  'profile.sparkplug.period': opt.duration(
    2000,
    'Sparkplug edge nodes: how often each device of a node publishes a DDATA',
    { min: 100 },
  ),
  'profile.drone.gpsInterval': opt.duration(100, 'Drone: GPS fix interval (10 Hz)', { min: 1 }),
  'profile.drone.batteryInterval': opt.duration(1000, 'Drone: battery reading interval (1 Hz)', { min: 1 }),
  'profile.drone.speed': opt.number(15, 'Drone: cruise speed in m/s along a delivery route', {
    min: 0.1,
    max: 100,
  }),
  'profile.environment.interval': opt.duration(
    5000,
    'Environmental sensor: temperature and humidity interval (0.1-1 Hz: 1s-10s)',
    { min: 1000, max: 10_000 },
  ),
  'profile.constant.interval': opt.duration(100, 'Constant profile: one reading per device per interval', {
    min: 1,
  }),
  'profile.constant.payloadBytes': opt.integer(120, 'Constant profile: payload size', { min: 8, max: 8000 }),

  'faults.duplicate': opt.number(0, 'Probability that a publish is sent twice (same seq)', {
    min: 0,
    max: 1,
  }),
  'faults.outOfOrder': opt.number(0, 'Probability that a reading is held back and sent after the next one', {
    min: 0,
    max: 1,
  }),
  'faults.malformed': opt.number(
    0,
    'MQTT devices: probability per publish of also sending a malformed (non-JSON) payload',
    { min: 0, max: 1 },
  ),
  'faults.clockSkew': opt.number(0, 'Fraction of devices whose clock is off by faults.clockSkewMs', {
    min: 0,
    max: 1,
  }),
  'faults.clockSkewMs': opt.integer(60_000, 'Clock offset of skewed devices (half ahead, half behind)', {
    min: 0,
  }),
  'faults.slowCommands': opt.number(0, 'Probability that a command handler stalls for faults.slowCommandMs', {
    min: 0,
    max: 1,
  }),
  'faults.slowCommandMs': opt.duration(2000, 'How long a slow command handler stalls', { min: 0 }),
  'faults.storms': opt.number(
    0,
    'Disconnect storms per minute: faults.stormFraction of MQTT devices lose their connection at once (and the agents their Redis connection)',
    { min: 0, max: 600 },
  ),
  'faults.stormFraction': opt.number(0.5, 'Share of MQTT devices a storm disconnects', { min: 0, max: 1 }),
  'faults.crashes': opt.number(
    0,
    'Device crashes per minute (fleet-wide): a random device dies without a goodbye and reboots after faults.crashDowntime',
    { min: 0, max: 6000 },
  ),
  'faults.crashDowntime': opt.duration(2000, 'How long a crashed device stays down', { min: 0 }),
  'faults.seed': opt.integer(1, 'Seed of the fault and signal random numbers (runs are repeatable)', {
    min: 0,
  }),

  ...redisSchema,
  ...producerSchema,
  // One producer carries every agent device of the process (a real agent has one each): larger
  // batches and buffer, or a thousand devices would share what one agent holds.
  'producer.batchMaxEntries': { ...producerSchema['producer.batchMaxEntries'], default: 500 },
  'producer.maxInFlightBatches': { ...producerSchema['producer.maxInFlightBatches'], default: 8 },
  'producer.maxBufferedEntries': { ...producerSchema['producer.maxBufferedEntries'], default: 200_000 },
  // No linger: one scheduler tick offers every agent's due readings at once, and nothing more
  // comes until the next tick (fleet.tick, 10 ms), so the tick already is the batch; a 5 ms
  // linger only added up to 5 ms to every reading (agents: ingest p50 5 -> 2 ms at 500 drones).
  'producer.lingerMs': { ...producerSchema['producer.lingerMs'], default: 0 },
  ...commandSchema,
  ...logSchema,
  ...metricsSchema,
} as const;

export type SimSchema = typeof simSchema;
export type SimConfig = ConfigOf<SimSchema>;
