/** The gateway's options: every key, its default, its environment variable and flag (docs/gateway.md). */
import { type ConfigOf, opt } from '#shared/config/schema.js';
import { healthSchema } from '#shared/health.js';
import { logSchema } from '#shared/log.js';
import { metricsSchema } from '#shared/metrics.js';
import { redisSchema } from '#shared/redis/options.js';
import { producerSchema } from '#shared/telemetry/producer-options.js';
import { dashboardSchema } from './dashboard/options.js';
import { projectionSchema } from './projection/options.js';
import { retentionSchema } from './retention/options.js';
import { sparkplugSchema } from './sparkplug/options.js';

export const ENV_PREFIX = 'GATEWAY';

export const gatewaySchema = {
  'gateway.mode': opt.enum(
    ['broker', 'bridge'],
    'broker',
    'broker: devices connect to the gateway (embedded aedes); bridge: the gateway subscribes to an existing broker',
  ),
  'gateway.id': opt.string('', 'Name of this gateway (consumer name for commands); default: hostname-pid'),

  // Broker mode listeners.
  'broker.host': opt.string('127.0.0.1', 'Address the MQTT listeners bind to'),
  'broker.port': opt.integer(1883, 'MQTT over TCP port (0 = pick a free port)', { min: 0, max: 65535 }),
  'broker.tlsPort': opt.integer(-1, 'MQTT over TLS port (-1 = off, 0 = pick a free port)', {
    min: -1,
    max: 65535,
  }),
  'broker.tlsCertFile': opt.optionalString('PEM server certificate for the TLS listener'),
  'broker.tlsKeyFile': opt.optionalString('PEM key of the server certificate'),
  'broker.tlsCaFile': opt.optionalString(
    'PEM CA that signs device client certificates; when set, the TLS listener requires one',
  ),
  'broker.wsPort': opt.integer(-1, 'MQTT over WebSocket port (-1 = off, 0 = pick a free port)', {
    min: -1,
    max: 65535,
  }),

  // Device authentication and ACL (broker mode).
  'auth.credentialsFile': opt.optionalString(
    'JSON or YAML map of device id -> scrypt password hash (see `gateway hash-password`); when set, devices must log in',
  ),
  // Anonymous devices name themselves, so any client could publish as any device: by default only
  // while nothing but this host can reach the broker (gateway/broker.ts anonymousAllowed).
  'auth.allowAnonymous': opt.enum(
    ['loopback', 'true', 'false'],
    'loopback',
    'Without credentials, accept devices named by their user name or client id: loopback = only while broker.host is a loopback address (else the gateway refuses to start), true = on any address (trusted networks only), false = never',
  ),

  // Bridge mode.
  'bridge.url': opt.string(
    'mqtt://127.0.0.1:1883',
    'URL of the broker to bridge from (mqtt://, mqtts://, ws://)',
  ),
  'bridge.username': opt.optionalString('User name at the upstream broker'),
  'bridge.password': opt.optionalString('Password at the upstream broker', { secret: true }),
  'bridge.group': opt.string(
    'streamfleet',
    'Shared-subscription group: gateways in one group split the load',
  ),
  'bridge.connections': opt.integer(
    8,
    'Subscriber connections per gateway, in one shared subscription: each carries up to bridge.inflight messages at once',
    { min: 1, max: 256 },
  ),
  // 64: with 32 the windows filled before a batch had more than a few entries per partition
  // (bridge_vs_mosquitto 0.67-0.73 against 0.70-0.82 at 64, interleaved runs, docs/gateway.md).
  'bridge.inflight': opt.integer(
    64,
    'Messages per connection handed on before their PUBACK (held until each is in Redis, sent in order); told to the broker as Receive Maximum over MQTT v5',
    { min: 1, max: 65535 },
  ),
  'bridge.protocolVersion': opt.enum(
    ['5', '4'],
    '5',
    'MQTT version to the upstream broker: 5 lets the broker drop a command at its deadline (message expiry); 4 (3.1.1, for brokers without v5) cannot, and firmware must check the deadline',
  ),
  'bridge.clientIdPrefix': opt.string(
    'streamfleet-gw',
    'Client ids are <prefix>-<gateway.id>-<n>; stable, so sessions persist across restarts',
  ),

  // Topic mapping.
  'topics.telemetry': opt.string(
    'devices/{deviceId}/telemetry/{type}',
    'Telemetry topic template; {deviceId} is required, {type} optional (else the payload type or topics.defaultType)',
  ),
  'topics.defaultType': opt.string('value', 'Reading type when neither the topic nor the payload names one'),
  'topics.commands': opt.string('devices/{deviceId}/commands', 'Topic a device receives its commands on'),
  'topics.results': opt.string('devices/{deviceId}/results', 'Topic a device publishes command results on'),
  'topics.status': opt.string(
    'devices/{deviceId}/status',
    'Topic of presence messages (online/offline, last wills): they become presence events',
  ),
  // Vendor mappings (gateway/mappings, docs/mappings.md).
  mapping: opt.list(
    [],
    'Vendor topic/payload mappings to run: built-in names (tasmota, zigbee2mqtt, shelly-gen2) or YAML file paths, comma-separated; see docs/mappings.md',
  ),
  'gateway.maxPayloadBytes': opt.size(
    8192,
    'Largest MQTT payload accepted; larger ones go to the rejected stream',
    {
      min: 16,
      max: 1024 * 1024,
    },
  ),
  'gateway.maxPendingEvents': opt.integer(
    10_000,
    'Connect/disconnect presence events waiting for Redis at most; more (an outage with a reconnect storm) are dropped and counted',
    { min: 1 },
  ),
  'gateway.sequenceBlock': opt.integer(
    1000,
    'Gateway-assigned sequence numbers reserved per Redis round trip (a crash leaves at most this gap)',
    { min: 1, max: 1_000_000 },
  ),
  // Off by default: retention (retention.*) trims these streams lag-aware and counts every forced loss;
  // an XADD MAXLEN cap would trim past consumer groups without counting.
  'gateway.rejectedMaxLen': opt.integer(
    0,
    'Approximate XADD MAXLEN cap of the rejected stream; UNCOUNTED: it drops entries past consumer groups with no metric (0 = off, leave it to retention)',
    {
      min: 0,
    },
  ),
  'gateway.presenceMaxLen': opt.integer(
    0,
    'Approximate XADD MAXLEN cap of the presence stream; UNCOUNTED: it drops entries past consumer groups with no metric (0 = off, leave it to retention)',
    {
      min: 0,
    },
  ),
  'commands.enabled': opt.boolean(true, 'Deliver commands to MQTT devices and record their results'),
  'commands.pollInterval': opt.duration(
    2000,
    'Fallback: how often the command streams of reachable devices are read while the doorbell is off or failing',
    { min: 10 },
  ),
  'commands.doorbellPollInterval': opt.duration(
    30_000,
    'Fallback: how often they are read while the doorbell listens (a backstop for rings trimmed unread); paced over the interval',
    { min: 10 },
  ),
  'commands.doorbell': opt.boolean(
    true,
    "Read a device's command stream as soon as a sender rings the doorbell stream (else only at each poll)",
  ),
  'commands.sweepInterval': opt.duration(
    1000,
    'How often commands nobody can deliver are checked against their deadlines',
    { min: 50 },
  ),
  'commands.agentResultGrace': opt.duration(
    10 * 60_000,
    "After its deadline, how long an agent's delivered or running command waits for the agent's result before the sweep ends it unknown (the agent is gone). Keep it above the agents' longest handler timeout",
    { min: 1000 },
  ),
  'commands.ledgerRetention': opt.duration(
    24 * 3_600_000,
    'How long a command ledger outlives its deadline',
    {
      min: 1000,
    },
  ),
  // As the agent's commands.resultsMaxLen: both end commands through shared/commands/conclude.ts.
  'commands.resultsMaxLen': opt.integer(
    0,
    'Approximate XADD MAXLEN cap of the results stream for the results this gateway publishes; UNCOUNTED: it drops entries past consumer groups with no metric (0 = off, leave it to retention)',
    { min: 0 },
  ),
  'gateway.leaseTtl': opt.duration(
    15_000,
    "Lease of this gateway in Redis; once a gateway's lease has expired, another takes over its bridge sessions",
    { min: 300 },
  ),
  'gateway.adoptIdle': opt.duration(
    2000,
    "A gone gateway's bridge session is drained until no message came for this long, then ended",
    { min: 50 },
  ),
  'gateway.shutdownTimeout': opt.duration(
    5000,
    'On SIGTERM/SIGINT, how long to flush what the gateway holds',
    {
      min: 0,
    },
  ),
  ...redisSchema,
  ...producerSchema,
  // A gateway batches across many devices that each wait for their PUBACK: a short linger keeps latency low.
  'producer.lingerMs': { ...producerSchema['producer.lingerMs'], default: 1 },
  ...logSchema,
  ...metricsSchema,
  ...healthSchema,
  ...dashboardSchema,
  ...retentionSchema,
  ...projectionSchema,
  ...sparkplugSchema,
} as const;

export type GatewaySchema = typeof gatewaySchema;
export type GatewayConfig = ConfigOf<GatewaySchema>;
