/**
 * `ctl streams [commands]`: every stream with its length, memory, consumer
 * groups, lag, pending count and the age of the oldest pending entry.
 * `ctl streams commands` lists the devices' command streams instead (found by
 * SCAN, on every master of a cluster).
 */
import { UsageError } from '#shared/errors.js';
import {
  commandStreamPattern,
  familyStreams,
  inspectStream,
  type StreamInfo,
  scanStreams,
  serverTime,
} from '#shared/streams/inspect.js';
import { type CtlCommand, table } from './context.js';

const USAGE = `Usage:
  ctl streams             telemetry partitions, results, presence, rejected, dead letters
  ctl streams commands    every device's command stream (at most 10000)`;

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function formatAge(ms: number | null): string | undefined {
  if (ms === null) return undefined;
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)}m`;
  if (ms < 86_400_000) return `${(ms / 3_600_000).toFixed(1)}h`;
  return `${(ms / 86_400_000).toFixed(1)}d`;
}

/** One row per (stream, group); a stream without groups gets one row. */
function rows(infos: ReadonlyArray<StreamInfo & { family: string }>): Array<Record<string, unknown>> {
  return infos.flatMap((s): Array<Record<string, unknown>> => {
    const base = { stream: s.key, family: s.family, length: s.length, memory: formatBytes(s.memoryBytes) };
    if (s.groups.length === 0) return [{ ...base, group: undefined }];
    return s.groups.map((g) => ({
      ...base,
      group: g.name,
      consumers: g.consumers,
      lag: g.lag ?? '?',
      pending: g.pending,
      'oldest pending': formatAge(g.oldestPendingAgeMs),
    }));
  });
}

const streams: CtlCommand = async (ctx, args) => {
  const [what, ...extra] = args;
  if (extra.length > 0 || (what !== undefined && what !== 'commands'))
    throw new UsageError(`unexpected argument "${what}"`, USAGE);
  const list =
    what === 'commands'
      ? (await scanStreams(ctx.client, commandStreamPattern(ctx.keys), 10_000)).map((key) => ({
          family: 'commands',
          key,
        }))
      : familyStreams(ctx.keys);
  const now = await serverTime(ctx.client);
  const infos = await Promise.all(
    list.map(async ({ family, key }) => ({ family, ...(await inspectStream(ctx.client, key, now)) })),
  );
  if (ctx.json) {
    ctx.out(JSON.stringify({ now, streams: infos }));
    return 0;
  }
  ctx.out(
    table(rows(infos), [
      'stream',
      'family',
      'length',
      'memory',
      'group',
      'consumers',
      'lag',
      'pending',
      'oldest pending',
    ]),
  );
  const total = infos.reduce((n, s) => n + s.memoryBytes, 0);
  ctx.out(
    `\n${infos.length} streams, ${infos.reduce((n, s) => n + s.length, 0)} entries, ${formatBytes(total)}`,
  );
  return 0;
};

export default streams;
