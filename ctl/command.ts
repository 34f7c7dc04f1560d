/**
 * `ctl command send <deviceId[,deviceId...]|-> <name> ['<json args>'] [--ttl 30s] [--wait]
 *   [--wait-timeout 35s] [--tag a,b] [--fleet] [--command-id ID] [--correlation-id ID]`
 * `ctl command status <deviceId> <commandId>`
 *
 * Exit codes: 0 sent (or succeeded, with --wait), 1 a terminal result other
 * than succeeded, 2 usage or validation error, 4 no result within the wait.
 */
import type { CommandArgs, CommandResult } from '#shared/commands/codec.js';
import { commandStatus, ResultWatcher, type Sent, sendToGroup } from '#shared/commands/send.js';
import { CommandTimeoutError, UsageError, ValidationError } from '#shared/errors.js';
import { durabilityOf } from '#shared/telemetry/producer-options.js';
import { type CtlCommand, table } from './context.js';

const USAGE = `Usage:
  ctl command send <deviceId[,deviceId...]|-> <name> ['<json args>'] [--ttl 30s] [--wait] [--wait-timeout 35s]
                   [--tag site-a,drone] [--fleet] [--command-id ID] [--correlation-id ID]
  ctl command status <deviceId> <commandId>

Use "-" as the device list with --tag or --fleet alone.`;

function parseArgs(text: string | undefined): CommandArgs {
  if (text === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ValidationError(
      'args',
      `'${text}' is not valid JSON (quote it: '{"sensor":"gps","interval":"5s"}')`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError('args', 'must be a JSON object');
  }
  return value as CommandArgs;
}

function row(r: CommandResult): Record<string, unknown> {
  return {
    device: r.deviceId,
    status: r.status,
    attempts: r.attempts,
    'round trip ms': r.issuedAt === undefined ? undefined : r.finishedAt - r.issuedAt,
    output: r.output,
    error: r.message,
  };
}

const command: CtlCommand = async (ctx, args) => {
  const [verb, ...rest] = args;
  if (verb === 'status') {
    const [deviceId, commandId] = rest;
    if (!deviceId || !commandId) throw new UsageError('status needs <deviceId> <commandId>', USAGE);
    const view = await commandStatus(ctx.client, ctx.keys, deviceId, commandId);
    ctx.out(
      ctx.json
        ? JSON.stringify(view)
        : table([
            {
              device: deviceId,
              command: commandId,
              ...view,
              result: view.result?.output ?? view.result?.message,
            },
          ]),
    );
    return view.status === 'none' ? 1 : 0;
  }
  if (verb !== 'send') throw new UsageError(verb ? `unknown verb "${verb}"` : 'no verb given', USAGE);
  const [deviceList, name, argsText] = rest;
  if (!deviceList || !name) throw new UsageError('send needs <deviceId> <name>', USAGE);
  const c = ctx.config;
  const devices = deviceList === '-' ? [] : deviceList.split(',').filter(Boolean);
  const sent: Sent[] = await sendToGroup(
    ctx.client,
    ctx.keys,
    { devices, tags: c.tag, fleet: c.fleet },
    {
      name,
      args: parseArgs(argsText),
      ttlMs: c.ttl,
      id: c.commandId,
      correlationId: c.correlationId,
      durability: durabilityOf(c),
    },
  );
  const first = sent[0]!.command;
  if (!c.wait) {
    ctx.out(
      ctx.json
        ? JSON.stringify({
            commandId: first.id,
            deadline: first.deadline,
            devices: sent.map((s) => ({ device: s.deviceId, entryId: s.entryId, duplicate: s.duplicate })),
          })
        : `sent ${first.name} ${first.id} to ${sent.length} device(s): ${sent.map((s) => s.deviceId + (s.duplicate ? ' (already queued)' : '')).join(', ')}`,
    );
    return 0;
  }
  const timeoutMs = c.waitTimeout > 0 ? c.waitTimeout : c.ttl + 5000;
  const watcher = new ResultWatcher(ctx.client, ctx.keys);
  await watcher.start();
  try {
    const outcomes = await Promise.all(
      sent.map((s) =>
        watcher.wait(s.deviceId, first.id, timeoutMs).then(
          (r) => ({ result: r, error: undefined }),
          (error: unknown) => ({ result: undefined, error, device: s.deviceId }),
        ),
      ),
    );
    const results = outcomes.flatMap((o) => (o.result ? [o.result] : []));
    const timeouts = outcomes.flatMap((o) => (o.error instanceof CommandTimeoutError ? [o.error] : []));
    const other = outcomes.find((o) => o.error && !(o.error instanceof CommandTimeoutError));
    if (other) throw other.error;
    if (ctx.json)
      ctx.out(
        JSON.stringify({
          commandId: first.id,
          results,
          timedOut: timeouts.map((t) => ({ device: t.deviceId, lastStatus: t.lastStatus })),
        }),
      );
    else {
      if (results.length) ctx.out(table(results.map(row)));
      for (const t of timeouts) ctx.out(`timed out: ${t.message}`);
    }
    if (timeouts.length) return 4;
    return results.every((r) => r.status === 'succeeded') ? 0 : 1;
  } finally {
    await watcher.stop();
  }
};

export default command;
