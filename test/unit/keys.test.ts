import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fnv1a32, KEY_KINDS, Keys, partitionOf } from '#shared/keys.js';
import { KEYS_DOC, renderKeysDoc } from '../../scripts/keys-docs.js';

/** Redis Cluster's hash slot: CRC16 (XMODEM) of the hash tag, mod 16384. */
function slot(key: string): number {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  const tag = open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  for (const byte of Buffer.from(tag)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

describe('keys and partitioning', () => {
  it('maps a device to a stable partition (FNV-1a, fixed vectors)', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
    expect(partitionOf('pi-07', 16)).toBe(fnv1a32('pi-07') % 16);
  });

  it('spreads devices over all partitions', () => {
    const counts = new Array(16).fill(0);
    for (let i = 0; i < 16_000; i++) counts[partitionOf(`dev-${i}`, 16)]++;
    for (const c of counts) expect(c).toBeGreaterThan(700);
  });

  it('puts a partition stream and its sequence state in one cluster slot', () => {
    const keys = new Keys('iot', 32);
    for (let p = 0; p < 32; p++) expect(slot(keys.telemetrySeqState(p))).toBe(slot(keys.telemetryStream(p)));
  });

  it("puts a partition's latest-state hash in its slot (the append script writes both)", () => {
    const keys = new Keys('iot', 32);
    for (let p = 0; p < 32; p++) expect(slot(keys.partitionState(p))).toBe(slot(keys.telemetryStream(p)));
    for (const d of ['dev-1', 'gw:a@b'])
      expect(keys.partitionStateFor(d)).toBe(keys.partitionState(keys.partitionOf(d)));
  });

  it("groups items by their device's partition, each group in the items' order", () => {
    const keys = new Keys('iot', 4);
    const items = Array.from({ length: 40 }, (_, i) => ({ device: `dev-${i % 10}`, n: i }));
    const groups = keys.byPartition(items, (it) => it.device);
    expect([...groups.values()].flat()).toHaveLength(items.length);
    for (const [p, group] of groups) {
      for (const it of group) expect(keys.partitionOf(it.device)).toBe(p);
      expect(group.map((it) => it.n)).toEqual([...group.map((it) => it.n)].sort((a, b) => a - b));
    }
  });

  it('puts all of a device key family in one slot', () => {
    const keys = new Keys();
    expect(slot(keys.commands('dev-9'))).toBe(slot(keys.device('dev-9', 'anything')));
  });

  it('spreads partitions over slots', () => {
    const keys = new Keys('iot', 16);
    expect(new Set(keys.allTelemetryStreams().map(slot)).size).toBe(16);
  });

  it('rejects prefixes and partition counts that would break the layout', () => {
    expect(() => new Keys('bad prefix')).toThrow(/prefix/);
    expect(() => new Keys('iot', 0)).toThrow(/partitions/);
  });
});

describe('docs/keys.md', () => {
  it('lists every kind of key that Keys makes', () => {
    const helpers = new Set([
      'constructor',
      'partitionOf',
      'byPartition',
      'telemetryStreamFor',
      'partitionStateFor',
      'allTelemetryStreams',
      'device',
    ]);
    const makers = Object.getOwnPropertyNames(Keys.prototype).filter((name) => !helpers.has(name));
    expect(KEY_KINDS.map((kind) => kind.method).sort()).toEqual(makers.sort());
  });

  it('is current (run npm run docs:keys after changing shared/keys.ts)', () => {
    const onDisk = readFileSync(KEYS_DOC, 'utf8');
    expect(onDisk).toBe(renderKeysDoc(onDisk));
  });
});
