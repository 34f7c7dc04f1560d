/**
 * `ctl device <id> [count]`: a device's latest state (from the projection),
 * when it was last seen, its recent telemetry and its recent commands with
 * their status.
 */
import { decodeCommand, salvageCommand } from '#shared/commands/codec.js';
import { commandStatus } from '#shared/commands/send.js';
import { decodeEnvelope, type TelemetryEnvelope } from '#shared/envelope.js';
import { UsageError } from '#shared/errors.js';
import { assertDeviceId } from '#shared/keys.js';
import { readDeviceState } from '#shared/state.js';
import { idTime, serverTime } from '#shared/streams/inspect.js';
import { type CtlCommand, table } from './context.js';
import { formatAge } from './streams.js';

const USAGE = `Usage: ctl device <deviceId> [count]

Shows the device's latest state per reading type, when it was last seen, and
its last [count] (default 10) telemetry entries and commands.`;

/** How far back the device's partition is searched for its entries (a partition holds many devices). */
const SCAN_LIMIT = 5000;

const device: CtlCommand = async (ctx, args) => {
  const [deviceId, countText] = args;
  if (!deviceId) throw new UsageError('no device id given', USAGE);
  assertDeviceId(deviceId);
  const count = countText === undefined ? 10 : Number(countText);
  if (!Number.isInteger(count) || count < 1 || count > 1000)
    throw new UsageError(`count must be an integer in 1..1000, got "${countText}"`, USAGE);
  const { client, keys } = ctx;
  const now = await serverTime(client);

  const [state, lastSeenGateway, partition, commandEntries] = await Promise.all([
    readDeviceState(client, keys, deviceId),
    client.hget(keys.lastSeen(), deviceId),
    client.xrevrange(keys.telemetryStreamFor(deviceId), '+', '-', 'COUNT', SCAN_LIMIT),
    client.xrevrange(keys.commands(deviceId), '+', '-', 'COUNT', count),
  ]);

  const telemetry: Array<TelemetryEnvelope & { id: string }> = [];
  for (const [id, fields] of partition) {
    if (telemetry.length >= count) break;
    try {
      const e = decodeEnvelope(fields);
      if (e.deviceId === deviceId) telemetry.push({ id, ...e });
    } catch {
      // a malformed entry is not this command's concern (the projection counts it)
    }
  }
  const commands = await Promise.all(
    commandEntries.map(async ([entryId, fields]) => {
      let id: string | undefined;
      let name: string | undefined;
      let deadline: number | undefined;
      try {
        const c = decodeCommand(fields);
        ({ id, name, deadline } = c);
      } catch {
        ({ id, name } = salvageCommand(fields));
      }
      const ledger = id ? await commandStatus(client, keys, deviceId, id) : undefined;
      return {
        entryId,
        id,
        name,
        queuedAt: idTime(entryId),
        deadline,
        status: ledger?.status ?? 'malformed',
        attempts: ledger?.attempts,
        result: ledger?.result,
      };
    }),
  );

  const seen = Math.max(state?.seen ?? 0, Number(lastSeenGateway ?? 0));
  if (ctx.json) {
    ctx.out(
      JSON.stringify({ deviceId, now, lastSeen: seen || null, state: state ?? null, telemetry, commands }),
    );
    return state || telemetry.length || commands.length ? 0 : 1;
  }
  const ago = (t: number) =>
    t ? `${new Date(t).toISOString()} (${formatAge(Math.max(0, now - t))} ago)` : '-';
  ctx.out(`device     ${deviceId}`);
  ctx.out(`partition  ${keys.telemetryStreamFor(deviceId)}`);
  ctx.out(`last seen  ${ago(seen)}`);
  if (state) ctx.out(`newest     seq ${state.seq}, device time ${new Date(state.time).toISOString()}`);
  else ctx.out('newest     (no state yet: is the projection running?)');
  ctx.out('\nstate (newest reading per type, by sequence number)');
  ctx.out(
    table(
      Object.entries(state?.readings ?? {}).map(([type, r]) => ({
        type,
        seq: r.seq,
        'device time': new Date(r.time).toISOString(),
        payload: r.payload,
      })),
    ),
  );
  ctx.out(`\nrecent telemetry (last ${count} within the newest ${SCAN_LIMIT} entries of its partition)`);
  ctx.out(
    table(
      telemetry.map((e) => ({
        id: e.id,
        seq: e.seq,
        type: e.type,
        'device time': new Date(e.time).toISOString(),
        payload: e.payload,
      })),
    ),
  );
  ctx.out(`\nrecent commands (last ${count})`);
  ctx.out(
    table(
      commands.map((c) => ({
        id: c.id,
        name: c.name,
        queued: new Date(c.queuedAt).toISOString(),
        status: c.status,
        attempts: c.attempts,
        error: c.result?.message,
      })),
    ),
  );
  if (!state && telemetry.length === 0 && commands.length === 0) {
    process.stderr.write(`ctl: nothing known about device "${deviceId}"\n`);
    return 1;
  }
  return 0;
};

export default device;
