/** An MQTT.js device for the command tests (broker and bridge mode): takes commands, answers them or not. */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

/** A command as the gateway publishes it to a device (docs/gateway.md, "Commands to MQTT devices"). */
export interface CommandMessage {
  id: string;
  name: string;
  args: Record<string, unknown>;
  deadline: number;
  issuedAt: number;
}

export interface CommandDeviceOptions {
  /** Reply `succeeded` with `{echo: args}` on devices/<id>/results; default true. */
  answer?: boolean;
  /** Every command received is pushed here. */
  received?: CommandMessage[];
  /** Extra MQTT.js options (the default is a persistent session, no reconnects). */
  mqtt?: IClientOptions;
}

/**
 * Connects a device that subscribes to devices/<id>/commands at QoS 1. The
 * message handler is in place before the connection is: a resumed session's
 * queued messages, which follow the CONNACK at once, are never missed.
 */
export async function commandDevice(
  url: string,
  id: string,
  options: CommandDeviceOptions = {},
): Promise<MqttClient> {
  const { answer = true, received = [] } = options;
  const d = mqtt.connect(url, { clientId: id, clean: false, reconnectPeriod: 0, ...options.mqtt });
  d.on('message', (topic, payload) => {
    if (topic !== `devices/${id}/commands`) return;
    const cmd = JSON.parse(payload.toString()) as CommandMessage;
    received.push(cmd);
    if (answer)
      void d.publishAsync(
        `devices/${id}/results`,
        JSON.stringify({ id: cmd.id, status: 'succeeded', output: { echo: cmd.args } }),
        { qos: 1 },
      );
  });
  await new Promise<void>((resolve, reject) => {
    d.once('connect', () => resolve());
    d.once('error', reject);
  });
  await d.subscribeAsync(`devices/${id}/commands`, { qos: 1 });
  return d;
}
