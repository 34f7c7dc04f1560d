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

/**
 * A device publishing `{seq, v, pad}` at QoS 1 to devices/<id>/telemetry/load
 * with `window` publishes in flight (`pauseMs`, default 2 ms, after each PUBACK); `acked` holds every seq whose
 * PUBACK came back (from the gateway in broker mode, from the upstream broker
 * in bridge mode).
 */
export class QosPublisher {
  readonly acked = new Set<number>();
  private next = 1;
  private inFlight = 0;
  private running = true;
  private drained: (() => void) | undefined;

  constructor(
    readonly id: string,
    readonly client: MqttClient,
    window = 16,
    private readonly pauseMs = 2,
  ) {
    for (let i = 0; i < window; i++) this.pump();
  }

  private pump(): void {
    if (!this.running) {
      if (this.inFlight === 0) this.drained?.();
      return;
    }
    const seq = this.next++;
    this.inFlight++;
    this.client.publish(
      `devices/${this.id}/telemetry/load`,
      JSON.stringify({ seq, v: seq, pad: 'x'.repeat(80) }),
      { qos: 1 },
      (err) => {
        this.inFlight--;
        if (!err) this.acked.add(seq);
        // Pace a little so the run stays short and the machine shared.
        setTimeout(() => this.pump(), this.pauseMs);
      },
    );
  }

  /** Stops publishing and waits until every in-flight publish is acknowledged. */
  stop(): Promise<void> {
    this.running = false;
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => (this.drained = resolve));
  }
}
