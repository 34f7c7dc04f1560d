/**
 * The MQTT command protocol of devices that run no agent, shared by the
 * gateway (which publishes commands and reads replies) and firmware-sim
 * (which plays such a device): encode and decode of both messages, side by
 * side. JSON, UTF-8:
 *
 *   command  {id, name, args, deadline, issuedAt}   gateway -> device, QoS 1
 *   result   {id, status, output?, errorClass?, message?}   device -> gateway
 *            status: succeeded | failed | rejected
 */
import { ValidationError } from '../errors.js';
import type { Command, CommandArgs } from './codec.js';

export interface CommandMessage {
  readonly id: string;
  readonly name: string;
  readonly args: CommandArgs;
  /** ms since the epoch; +Infinity when a (non-gateway) sender gave none. */
  readonly deadline: number;
  readonly issuedAt?: number;
}

/** What a device may report: the statuses it decides (expired and unknown are the gateway's). */
export const DEVICE_RESULT_STATUSES = ['succeeded', 'failed', 'rejected'] as const;
export type DeviceResultStatus = (typeof DEVICE_RESULT_STATUSES)[number];

export interface ResultMessage {
  readonly id: string;
  readonly status: DeviceResultStatus;
  readonly output?: unknown;
  readonly errorClass?: string;
  readonly message?: string;
}

/** A device's reply as read: `status` undefined when it named none of DEVICE_RESULT_STATUSES. */
export type ResultReply = Omit<ResultMessage, 'status'> & { readonly status: DeviceResultStatus | undefined };

const text = (raw: Buffer | string) => (typeof raw === 'string' ? raw : raw.toString('utf8'));

function parseObject(raw: Buffer | string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text(raw));
  } catch {
    throw new ValidationError(what, `${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ValidationError(what, `${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

export function encodeCommandMessage(c: Command): Buffer {
  const { id, name, args, deadline, issuedAt } = c;
  return Buffer.from(JSON.stringify({ id, name, args, deadline, issuedAt }));
}

/** Decodes a command message; throws ValidationError when it has no id or name (nothing to answer). */
export function decodeCommandMessage(raw: Buffer | string): CommandMessage {
  const m = parseObject(raw, 'command');
  if (typeof m.id !== 'string' || typeof m.name !== 'string')
    throw new ValidationError('command', 'has no string id or name');
  return {
    id: m.id,
    name: m.name,
    args:
      typeof m.args === 'object' && m.args !== null && !Array.isArray(m.args) ? (m.args as CommandArgs) : {},
    deadline: typeof m.deadline === 'number' ? m.deadline : Number.POSITIVE_INFINITY,
    issuedAt: typeof m.issuedAt === 'number' ? m.issuedAt : undefined,
  };
}

/** The id of a command message (the gateway reads it from a device's PUBACK); undefined if unreadable. */
export function commandMessageId(raw: Buffer | string): string | undefined {
  try {
    const { id } = parseObject(raw, 'command');
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

export function encodeResultMessage(r: ResultMessage): string {
  return JSON.stringify(r);
}

/**
 * Decodes a device's reply. Throws ValidationError only when it is not a JSON object; a missing
 * id reads as '', an unknown status as undefined, so the caller can say which command it was.
 * A `failed` reply without an error class gets 'Error'; output is kept for `succeeded` only.
 */
export function decodeResultMessage(raw: Buffer | string): ResultReply {
  const m = parseObject(raw, 'command result');
  const status = (DEVICE_RESULT_STATUSES as readonly unknown[]).includes(m.status)
    ? (m.status as DeviceResultStatus)
    : undefined;
  return {
    id: typeof m.id === 'string' ? m.id : '',
    status,
    output: status === 'succeeded' ? m.output : undefined,
    errorClass: typeof m.errorClass === 'string' ? m.errorClass : status === 'failed' ? 'Error' : undefined,
    message: typeof m.message === 'string' ? m.message : undefined,
  };
}
