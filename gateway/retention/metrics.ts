/** Retention's metrics, on the registry the process passes in. */
import { Counter, Gauge, Histogram, type Registry } from '#shared/metrics.js';

export interface RetentionMetrics {
  length: Gauge<'stream' | 'family'>;
  memory: Gauge<'stream' | 'family'>;
  lag: Gauge<'stream' | 'group'>;
  pending: Gauge<'stream' | 'group'>;
  oldestPendingAge: Gauge<'stream' | 'group'>;
  blocked: Gauge<'stream' | 'group'>;
  trimmed: Counter<'stream' | 'family' | 'reason'>;
  forcedLoss: Counter<'stream' | 'group'>;
  commandStreams: Gauge;
  passes: Counter;
  passErrors: Counter;
  passSeconds: Histogram;
}

export function createRetentionMetrics(registry: Registry): RetentionMetrics {
  const registers = [registry];
  return {
    length: new Gauge({
      name: 'stream_length',
      help: 'Entries in the stream (XLEN) after the last trim pass',
      labelNames: ['stream', 'family'],
      registers,
    }),
    memory: new Gauge({
      name: 'stream_memory_bytes',
      help: 'Memory of the stream (MEMORY USAGE, sampled) after the last trim pass',
      labelNames: ['stream', 'family'],
      registers,
    }),
    lag: new Gauge({
      name: 'stream_group_lag',
      help: 'Entries not yet delivered to the consumer group (XINFO GROUPS lag; absent when Redis cannot tell)',
      labelNames: ['stream', 'group'],
      registers,
    }),
    pending: new Gauge({
      name: 'stream_group_pending',
      help: 'Entries delivered to the group but not yet acknowledged',
      labelNames: ['stream', 'group'],
      registers,
    }),
    oldestPendingAge: new Gauge({
      name: 'stream_group_oldest_pending_age_seconds',
      help: 'Age of the oldest unacknowledged entry of the group (now minus its id time)',
      labelNames: ['stream', 'group'],
      registers,
    }),
    blocked: new Gauge({
      name: 'retention_blocked',
      help: '1 while this group holds back a soft retention policy (it still needs entries the policy would trim); for the command streams, how many streams it holds back (group "*": streams with no group yet)',
      labelNames: ['stream', 'group'],
      registers,
    }),
    trimmed: new Counter({
      name: 'retention_trimmed_entries_total',
      help: 'Entries removed by retention, by policy (age, length, cap)',
      labelNames: ['stream', 'family', 'reason'],
      registers,
    }),
    forcedLoss: new Counter({
      name: 'retention_forced_loss_entries_total',
      help: 'Entries the hard memory cap removed before this group had processed them (lost to the group)',
      labelNames: ['stream', 'group'],
      registers,
    }),
    commandStreams: new Gauge({
      name: 'retention_command_streams',
      help: 'Devices\' command streams found in the last complete scan cycle (their figures are summed under stream="<prefix>:{*}:commands")',
      registers,
    }),
    passes: new Counter({ name: 'retention_passes_total', help: 'Trim passes run', registers }),
    passErrors: new Counter({
      name: 'retention_stream_errors_total',
      help: 'Streams a trim pass could not trim (Redis errors)',
      registers,
    }),
    passSeconds: new Histogram({
      name: 'retention_pass_seconds',
      help: 'Duration of a trim pass over every stream',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers,
    }),
  };
}
