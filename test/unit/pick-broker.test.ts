import { describe, expect, it } from 'vitest';
import { pickBroker } from '../../firmware-sim/mqtt-device.js';

describe('pickBroker (mqtt.url as a list of gateways)', () => {
  const urls = 'mqtt://a:1883, mqtt://b:1883';
  it('spreads devices over the list and moves each reconnection to the next broker', () => {
    const first = Array.from({ length: 40 }, (_, i) => pickBroker(urls, `dev-${i}`, 0));
    expect(new Set(first)).toEqual(new Set(['mqtt://a:1883', 'mqtt://b:1883']));
    for (let i = 0; i < 40; i++) expect(pickBroker(urls, `dev-${i}`, 1)).not.toBe(first[i]);
  });
  it('a single URL is used as is', () => {
    expect(pickBroker('mqtt://a:1883', 'x', 7)).toBe('mqtt://a:1883');
  });
});
