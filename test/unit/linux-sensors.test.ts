import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuTemperatureSensor, parseLoadavg, parseMeminfo } from '../../device/sensors/linux.js';

describe('linux sensors', () => {
  it('parses /proc/loadavg', () => {
    expect(parseLoadavg('0.52 0.58 0.59 2/1003 12345\n')).toEqual({ l1: 0.52, l5: 0.58, l15: 0.59 });
    expect(parseLoadavg('garbage')).toBeUndefined();
  });

  it('parses /proc/meminfo', () => {
    const text = 'MemTotal:        1000000 kB\nMemFree:          100000 kB\nMemAvailable:     250000 kB\n';
    expect(parseMeminfo(text)).toEqual({ totalKb: 1_000_000, availableKb: 250_000, usedPct: 75 });
  });

  it('reads the CPU thermal zone in °C, and nothing where there is none', async () => {
    const root = mkdtempSync(join(tmpdir(), 'thermal-'));
    mkdirSync(join(root, 'thermal_zone0'));
    writeFileSync(join(root, 'thermal_zone0', 'type'), 'acpitz\n');
    writeFileSync(join(root, 'thermal_zone0', 'temp'), '30000\n');
    mkdirSync(join(root, 'thermal_zone1'));
    writeFileSync(join(root, 'thermal_zone1', 'type'), 'cpu-thermal\n');
    writeFileSync(join(root, 'thermal_zone1', 'temp'), '48312\n');
    expect(await cpuTemperatureSensor(root).read(0)).toEqual({ c: 48.312 });
    expect(await cpuTemperatureSensor(join(root, 'missing')).read(0)).toBeUndefined();
  });
});
