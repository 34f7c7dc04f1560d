/** Real Linux sources: CPU temperature, load average and memory from /sys and /proc. */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sensor } from './sensor.js';

/** CPU temperature (°C) from the first thermal zone whose type looks like a CPU, else the first zone. */
export function cpuTemperatureSensor(root = '/sys/class/thermal'): Sensor {
  let zone: string | null | undefined;
  const findZone = async (): Promise<string | null> => {
    try {
      const zones = (await readdir(root)).filter((z) => z.startsWith('thermal_zone')).sort();
      for (const z of zones) {
        const type = (await readFile(join(root, z, 'type'), 'utf8').catch(() => '')).trim();
        if (/cpu|x86_pkg|soc|arm/i.test(type)) return join(root, z, 'temp');
      }
      return zones[0] ? join(root, zones[0], 'temp') : null;
    } catch {
      return null;
    }
  };
  return {
    type: 'cpu_temp',
    read: async () => {
      if (zone === undefined) zone = await findZone();
      if (zone === null) return undefined;
      const milli = Number((await readFile(zone, 'utf8')).trim());
      return Number.isFinite(milli) ? { c: milli / 1000 } : undefined;
    },
  };
}

export function parseLoadavg(text: string): { l1: number; l5: number; l15: number } | undefined {
  const [l1, l5, l15] = text.trim().split(/\s+/).slice(0, 3).map(Number);
  if (l1 === undefined || l5 === undefined || l15 === undefined || [l1, l5, l15].some(Number.isNaN))
    return undefined;
  return { l1, l5, l15 };
}

export function loadSensor(file = '/proc/loadavg'): Sensor {
  return { type: 'load', read: async () => parseLoadavg(await readFile(file, 'utf8')) };
}

export function parseMeminfo(
  text: string,
): { totalKb: number; availableKb: number; usedPct: number } | undefined {
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const total = field('MemTotal');
  const available = field('MemAvailable') ?? field('MemFree');
  if (!total || available === undefined) return undefined;
  return { totalKb: total, availableKb: available, usedPct: Math.round((1 - available / total) * 1000) / 10 };
}

export function memorySensor(file = '/proc/meminfo'): Sensor {
  return { type: 'memory', read: async () => parseMeminfo(await readFile(file, 'utf8')) };
}
