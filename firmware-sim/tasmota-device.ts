/**
 * Tasmota-style firmware (https://tasmota.github.io/docs/MQTT/): a vendor
 * device that knows nothing of streamfleet's topics or envelope. Every
 * TelePeriod it publishes `tele/<topic>/SENSOR` (a smart plug: ENERGY; a
 * climate sensor: AM2301) and `tele/<topic>/STATE`, JSON without a sequence
 * number, at QoS 1, with `tele/<topic>/LWT` Online/Offline as its will. The
 * gateway takes them with `--mapping tasmota` (docs/mappings.md), which names
 * the device `tasmota-<topic>`: that is its MQTT user name, so broker mode's
 * rule (a device publishes only as itself) holds.
 *
 * Readings are not in the sequence ledger (the gateway numbers them); the
 * device counts what was sent and acknowledged.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Clock } from '#shared/clock.js';
import type { Logger } from '#shared/log.js';
import type { KindStats } from './device.js';

export type TasmotaModel = 'plug' | 'climate';

export interface TasmotaDeviceOptions {
  /** The Tasmota topic (%topic%); the gateway's device id is tasmota-<topic>. */
  topic: string;
  model: TasmotaModel;
  url: string;
  /** TelePeriod in ms (Tasmota's default is 300 s; the demo uses seconds). */
  telePeriodMs: number;
  random: () => number;
}

/** Tasmota's local time without a zone, as its "Time" field carries it. */
const tasmotaTime = (ms: number) => new Date(ms).toISOString().slice(0, 19);

export class TasmotaDevice {
  private client: MqttClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly started: number;
  private total = 0;
  private temperature: number;
  /** Counted in stats.connected while true. */
  private up = false;

  constructor(
    readonly options: TasmotaDeviceOptions,
    private readonly stats: KindStats,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.started = clock.now();
    this.temperature = 18 + Math.round(options.random() * 60) / 10;
  }

  private setUp(up: boolean): void {
    if (up !== this.up) this.stats.connected += up ? 1 : -1;
    this.up = up;
  }

  /** The device id the tasmota mapping gives it. */
  get deviceId(): string {
    return `tasmota-${this.options.topic}`;
  }

  start(): void {
    const lwt = `tele/${this.options.topic}/LWT`;
    const client = mqtt.connect(this.options.url, {
      clientId: `DVES_${this.options.topic}`,
      username: this.deviceId,
      will: { topic: lwt, payload: Buffer.from('Offline'), qos: 1, retain: true },
      reconnectPeriod: 1000,
    });
    this.client = client;
    client.on('connect', () => {
      this.setUp(true);
      client.publish(lwt, 'Online', { qos: 1, retain: true });
    });
    client.on('close', () => this.setUp(false));
    client.on('error', (err) => {
      this.stats.errors++;
      this.logger.debug({ device: this.deviceId, error: err.message }, 'tasmota device error');
    });
    this.timer = this.clock.setInterval(() => this.telemetry(), this.options.telePeriodMs);
  }

  private telemetry(): void {
    const client = this.client;
    if (!client?.connected) return;
    const now = this.clock.now();
    const t = this.options.topic;
    this.send(`tele/${t}/STATE`, this.state(now));
    this.send(`tele/${t}/SENSOR`, this.options.model === 'plug' ? this.energy(now) : this.climate(now));
  }

  private send(topic: string, body: unknown): void {
    this.stats.sent++;
    this.client?.publish(topic, JSON.stringify(body), { qos: 1 }, (err) => {
      if (err) this.stats.errors++;
      else this.stats.acked++;
    });
  }

  private state(now: number) {
    const up = Math.floor((now - this.started) / 1000);
    return {
      Time: tasmotaTime(now),
      Uptime: `0T${new Date(up * 1000).toISOString().slice(11, 19)}`,
      UptimeSec: up,
      Heap: 25,
      SleepMode: 'Dynamic',
      Sleep: 50,
      LoadAvg: 19,
      MqttCount: 1,
      POWER: 'ON',
      Wifi: {
        AP: 1,
        SSId: 'demo',
        Channel: 6,
        Mode: '11n',
        RSSI: 70 + Math.floor(this.options.random() * 20),
      },
    };
  }

  private energy(now: number) {
    const power = Math.round(20 + this.options.random() * 60);
    this.total += (power * this.options.telePeriodMs) / 3_600_000_000; // kWh
    const voltage = Math.round(228 + this.options.random() * 6);
    return {
      Time: tasmotaTime(now),
      ENERGY: {
        TotalStartTime: tasmotaTime(this.started),
        Total: Number(this.total.toFixed(5)),
        Yesterday: 0,
        Today: Number(this.total.toFixed(5)),
        Period: 0,
        Power: power,
        ApparentPower: Math.round(power * 1.1),
        ReactivePower: Math.round(power * 0.4),
        Factor: 0.91,
        Voltage: voltage,
        Current: Number((power / voltage).toFixed(3)),
      },
    };
  }

  private climate(now: number) {
    this.temperature += (this.options.random() - 0.5) * 0.2;
    return {
      Time: tasmotaTime(now),
      AM2301: {
        Temperature: Number(this.temperature.toFixed(1)),
        Humidity: Number((40 + this.options.random() * 10).toFixed(1)),
        DewPoint: 7.2,
      },
      TempUnit: 'C',
    };
  }

  async stop(): Promise<void> {
    if (this.timer) this.clock.clearInterval(this.timer);
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    // A clean stop publishes Offline itself, as Tasmota does before a restart.
    if (client.connected)
      await client
        .publishAsync(`tele/${this.options.topic}/LWT`, 'Offline', { qos: 1, retain: true })
        .catch(() => {});
    await client.endAsync();
    this.setUp(false);
  }
}

/** Tasmota devices of a fleet: half plugs, half climate sensors, topics <prefix>-t-<n>. */
export function tasmotaDevices(
  count: number,
  prefix: string,
  url: string,
  telePeriodMs: number,
  random: () => number,
  stats: KindStats,
  clock: Clock,
  logger: Logger,
): TasmotaDevice[] {
  return Array.from(
    { length: count },
    (_, i) =>
      new TasmotaDevice(
        { topic: `${prefix}-t-${i}`, model: i % 2 === 0 ? 'plug' : 'climate', url, telePeriodMs, random },
        stats,
        clock,
        logger,
      ),
  );
}
