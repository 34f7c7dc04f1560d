/**
 * How a held command reaches its device, and how the device's PUBACK names
 * it: the seam between command delivery (which decides when) and a device
 * protocol (which decides the form). The default is the project's MQTT JSON
 * protocol (shared/commands/mqtt-messages.ts) on the device's command topic.
 * A transport's devices reply with a result; Sparkplug B devices answer none,
 * so their NCMD/DCMD go through the `commandRoute` hook in delivery.ts
 * (publishRouted), which ends the command once the broker took it.
 */
import type { Command } from '#shared/commands/codec.js';
import { commandMessageId, encodeCommandMessage } from '#shared/commands/mqtt-messages.js';
import type { GatewayContext } from '../services.js';

export interface CommandTransport {
  /** Publishes the command at QoS 1. `ttlMs`: bridge mode, the upstream broker drops it undelivered after that. */
  send(deviceId: string, command: Command, ttlMs?: number): Promise<void>;
  /** The command id a device acknowledged with a PUBACK on `topic`; undefined when it was not a command. */
  ackedCommand(deviceId: string, topic: string, payload: Buffer): string | undefined;
}

export function mqttJsonTransport(ctx: GatewayContext): CommandTransport {
  return {
    send: (deviceId, command, ttlMs) =>
      ctx.publishToDevice(ctx.templates.commands.topicFor(deviceId), encodeCommandMessage(command), 1, ttlMs),
    ackedCommand: (deviceId, topic, payload) =>
      topic === ctx.templates.commands.topicFor(deviceId) ? commandMessageId(payload) : undefined,
  };
}
