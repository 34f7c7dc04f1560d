/**
 * The `log` option of an MQTT.js client. MQTT.js logs through the `debug`
 * package on every packet (client.js `this.log(...)`); disabled, each call
 * still costs a call with its arguments built and an `enabled` check: 3-4 %
 * of the bridge gateway's and the simulator's CPU in their profiles. Unless
 * DEBUG asks for MQTT.js's logs, clients get a function that does nothing.
 */
const noop = (): void => {};

/** undefined (MQTT.js's own debug logger) when DEBUG names mqttjs, else a no-op. */
export function mqttClientLog(
  env: NodeJS.ProcessEnv = process.env,
): ((...args: unknown[]) => void) | undefined {
  const debug = env.DEBUG ?? '';
  return /(^|[\s,])(mqttjs|\*)/.test(debug) ? undefined : noop;
}
