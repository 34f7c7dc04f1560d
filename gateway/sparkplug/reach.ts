/**
 * Which devices command delivery can reach (broker mode): the broker's
 * connected devices and, beside them, the Sparkplug nodes and devices that are
 * born and not dead (they are reached through their edge node's connection).
 * Bridge mode has no reach (the upstream broker decides): undefined stays.
 */
import type { DeviceReach } from '../services.js';

export class SparkplugReach implements DeviceReach {
  private readonly sparkplug = new Set<string>();
  private readonly merged: Set<string> | undefined;
  private readonly listeners: Array<(deviceId: string, online: boolean) => void> = [];

  constructor(private readonly base: DeviceReach) {
    const online = base.online();
    this.merged = online ? new Set(online) : undefined;
    base.onChange((deviceId, up) => {
      if (this.merged) {
        if (up) this.merged.add(deviceId);
        else if (!this.sparkplug.has(deviceId)) this.merged.delete(deviceId);
      }
      for (const l of this.listeners) l(deviceId, up);
    });
  }

  /** A Sparkplug node or device was born (true) or died (false). */
  set(deviceId: string, up: boolean): void {
    if (up) this.sparkplug.add(deviceId);
    else this.sparkplug.delete(deviceId);
    if (this.merged) {
      if (up) this.merged.add(deviceId);
      else if (!this.base.online()?.has(deviceId)) this.merged.delete(deviceId);
    }
    for (const l of this.listeners) l(deviceId, up);
  }

  online(): ReadonlySet<string> | undefined {
    return this.merged;
  }

  onChange(listener: (deviceId: string, online: boolean) => void): void {
    this.listeners.push(listener);
  }

  onAck(listener: (deviceId: string, topic: string, payload: Buffer) => void): void {
    this.base.onAck(listener);
  }
}
