/**
 * Acknowledgement after append, with many messages in flight per bridge
 * connection.
 *
 * MQTT.js sends a QoS 1 message's PUBACK when `handleMessage`'s callback runs,
 * and reads the connection's next packet only after that PUBACK is written
 * (handlers/publish.js, client.js `work`). Calling back after the append
 * would carry one message per connection per Redis round trip. Instead the
 * callback runs at once, and the PUBACK it asks for is held here until its
 * message's append is acknowledged; held PUBACKs go out in the order their
 * PUBLISHes came, as MQTT requires of QoS 1 [MQTT-4.6.0-2]. The broker's
 * in-flight window (mosquitto: max_inflight_messages, or our Receive Maximum
 * over v5) bounds how many wait.
 *
 * A connection that closes forgets what it held: those messages were never
 * acknowledged, so the broker sends them again on the resumed session (and
 * the gateway's sequence check keeps them from being stored twice).
 */
import type { MqttClient, Packet } from 'mqtt';

interface Held {
  readonly messageId: number | undefined;
  appended: boolean;
  /** Writes the PUBACK, once MQTT.js has asked for it. */
  send?: () => void;
}

type SendPacket = (packet: Packet, cb?: (err?: Error) => void, ...rest: unknown[]) => void;

export class HeldPubacks {
  private queue: Held[] = [];

  /** Hooks `client`'s PUBACKs: from now on those of messages passed to `hold` wait for `appended`. */
  constructor(client: MqttClient) {
    const target = client as unknown as { _sendPacket: SendPacket };
    const send = target._sendPacket.bind(client) as SendPacket;
    target._sendPacket = (packet, cb, ...rest) => {
      const held =
        packet.cmd === 'puback'
          ? this.queue.find((h) => h.messageId === packet.messageId && !h.send)
          : undefined;
      if (!held) {
        send(packet, cb, ...rest);
        return;
      }
      held.send = () => send(packet, undefined, ...rest);
      // MQTT.js reads the next packet once this returns: the PUBACK itself waits for the append.
      cb?.();
      this.release();
    };
    client.on('close', () => {
      this.queue = [];
    });
  }

  /** Messages whose PUBACK is held (appended or not), on this connection. */
  get size(): number {
    return this.queue.length;
  }

  /** Holds the PUBACK of a QoS 1 message (call before handing it on); returns what to call once it is appended. */
  hold(messageId: number | undefined): () => void {
    const held: Held = { messageId, appended: false };
    this.queue.push(held);
    return () => {
      held.appended = true;
      this.release();
    };
  }

  /** Sends the PUBACKs at the head of the queue whose messages are appended, in arrival order. */
  private release(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (!head.appended || !head.send) return;
      this.queue.shift();
      head.send();
    }
  }
}
