/**
 * Typed errors: one class per failure kind, each with structured fields and a
 * message that tells the user what to change. Never mutate a plain Error.
 */
export abstract class FleetError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A configuration value is missing, malformed or out of range. */
export class ConfigError extends FleetError {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly option: string,
    readonly source: string,
    detail: string,
  ) {
    super(`config option "${option}" (from ${source}) ${detail}`);
  }
}

/** A telemetry envelope or command entry failed validation; `field` names the bad field. */
export class ValidationError extends FleetError {
  readonly code = 'VALIDATION_FAILED';
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`invalid field "${field}": ${reason}`);
  }
}

/** Redis could not be reached or did not answer in time. */
export class RedisUnavailableError extends FleetError {
  readonly code = 'REDIS_UNAVAILABLE';
  constructor(
    readonly target: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `cannot reach Redis at ${target}: ${detail}. Check redis.url (or REDIS_URL) and that the server is running`,
      options,
    );
  }
}

/** An append was not acknowledged within `appendTimeoutMs`. */
export class AppendTimeoutError extends FleetError {
  readonly code = 'APPEND_TIMEOUT';
  constructor(readonly timeoutMs: number) {
    super(
      `append not acknowledged within ${timeoutMs} ms (raise producer.appendTimeoutMs if Redis is known to be slow)`,
    );
  }
}

/** WAIT returned fewer replicas than the replicated durability level requires (shared/redis/durability.ts). */
export class ReplicationError extends FleetError {
  readonly code = 'NOT_REPLICATED';
  constructor(
    readonly wanted: number,
    readonly acknowledged: number,
  ) {
    super(
      `write reached ${acknowledged} of ${wanted} replicas (lower producer.replicas or check the replicas' health)`,
    );
  }
}

/**
 * The server refused or failed one of our Lua scripts (it did not compile, or raised while
 * running). Not an outage: retrying cannot help until the server or the script changes.
 */
export class ScriptError extends FleetError {
  readonly code = 'SCRIPT_FAILED';
  constructor(
    readonly script: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `Redis script ${script} failed on the server: ${detail}. Check that the server is a supported Redis or Valkey version (see README "Tested servers")`,
      options,
    );
  }
}

/** The bounded buffer is full: the caller must back off or divert (journal). */
export class BackpressureError extends FleetError {
  readonly code = 'BACKPRESSURE';
  constructor(readonly limit: number) {
    super(`producer buffer full (${limit} entries); raise producer.maxBufferedEntries or slow the sources`);
  }
}

/** No terminal result for a command arrived in time; `lastStatus` is its last recorded progress. */
export class CommandTimeoutError extends FleetError {
  readonly code = 'COMMAND_TIMEOUT';
  constructor(
    readonly commandId: string,
    readonly deviceId: string,
    readonly waitedMs: number,
    readonly lastStatus: string,
  ) {
    super(
      `no result for command ${commandId} on device ${deviceId} within ${waitedMs} ms; last status: ${lastStatus}${
        lastStatus === 'queued'
          ? ' (the device has not read it: is its agent running and connected?)'
          : lastStatus === 'none'
            ? ' (no such command for this device: check the id and device)'
            : ''
      }. Wait longer (--wait-timeout) or look later with \`ctl command status\``,
    );
  }
}

/** A command handler refused its arguments (or the device's state): the command ends `rejected`, never retried. */
export class CommandRejectedError extends FleetError {
  readonly code = 'COMMAND_REJECTED';
  constructor(
    readonly reason: string,
    readonly kind = 'CommandRejected',
  ) {
    super(reason);
  }
}

/** A command handler ran past its declared timeout. */
export class HandlerTimeoutError extends FleetError {
  readonly code = 'HANDLER_TIMEOUT';
  constructor(
    readonly handler: string,
    readonly timeoutMs: number,
  ) {
    super(`handler "${handler}" did not finish within its ${timeoutMs} ms timeout`);
  }
}

/** Human-readable message for a CLI: typed errors print their message, others their string. */
export function describeError(err: unknown): string {
  if (err instanceof FleetError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A command line was used wrongly; the message includes the usage. */
export class UsageError extends FleetError {
  readonly code = 'USAGE';
  constructor(
    detail: string,
    readonly usage: string,
  ) {
    super(`${detail}\n\n${usage}`);
  }
}

/** A state file the program keeps (such as the device's sequence reservation) does not hold a valid value. */
export class CorruptStateFileError extends FleetError {
  readonly code = 'STATE_FILE_CORRUPT';
  constructor(
    readonly file: string,
    readonly content: string,
    remedy: string,
  ) {
    super(`state file ${file} is corrupt (holds ${JSON.stringify(content.slice(0, 40))}): ${remedy}`);
  }
}

/** A Sparkplug B message that cannot be read: not the schema's protobuf, or a value its datatype cannot hold. */
export class SparkplugPayloadError extends FleetError {
  readonly code = 'SPARKPLUG_PAYLOAD';
  constructor(readonly reason: string) {
    super(`Sparkplug B payload: ${reason}`);
  }
}
