/** Builds the configured sensors by name. */
import { ConfigError } from '#shared/errors.js';
import { keysOf } from '#shared/util.js';
import { cpuTemperatureSensor, loadSensor, memorySensor } from './linux.js';
import { type Sensor, seededRandom } from './sensor.js';
import { batterySensor, constantSensor, gpsSensor, temperatureSensor } from './simulated.js';

export interface SensorSettings {
  seed: number;
  constantPayloadBytes: number;
}

const FACTORIES = {
  temperature: (s: SensorSettings) => temperatureSensor(seededRandom(s.seed)),
  battery: (s: SensorSettings) => batterySensor(seededRandom(s.seed + 1)),
  gps: (s: SensorSettings) => gpsSensor(seededRandom(s.seed + 2)),
  cpu_temp: () => cpuTemperatureSensor(),
  load: () => loadSensor(),
  memory: () => memorySensor(),
  constant: (s: SensorSettings) => constantSensor(s.constantPayloadBytes),
} satisfies Record<string, (s: SensorSettings) => Sensor>;

export type SensorName = keyof typeof FACTORIES;
export const SENSOR_NAMES = keysOf(FACTORIES);

export function isSensorName(name: string): name is SensorName {
  return Object.hasOwn(FACTORIES, name);
}

export function createSensor(name: string, settings: SensorSettings): Sensor {
  if (!isSensorName(name)) {
    throw new ConfigError(
      'sensors',
      'config',
      `names unknown sensor "${name}"; known: ${SENSOR_NAMES.join(', ')}`,
    );
  }
  return FACTORIES[name](settings);
}
