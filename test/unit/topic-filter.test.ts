import { describe, expect, it } from 'vitest';
import { TopicAcl } from '../../gateway/auth.js';
import { filterMatches } from '../../gateway/topic-filter.js';

describe('filterMatches (which publishes the broker routes to a subscriber)', () => {
  it.each([
    ['devices/d1/commands', 'devices/d1/commands', true],
    ['devices/d1/commands', 'devices/d1/telemetry', false],
    ['devices/d1/#', 'devices/d1/telemetry/gps', true],
    ['devices/d1/#', 'devices/d1', true],
    ['devices/d1/#', 'devices/d2/telemetry', false],
    ['devices/+/telemetry/+', 'devices/d1/telemetry/gps', true],
    ['devices/+/telemetry/+', 'devices/d1/telemetry', false],
    ['devices/+/telemetry', 'devices/d1/telemetry/gps', false],
    ['#', '$gateway/refused', false],
    ['+/refused', '$gateway/refused', false],
    ['$gateway/refused', '$gateway/refused', true],
  ])('%s matches %s: %s', (filter, topic, want) => {
    expect(filterMatches(filter, topic)).toBe(want);
  });
});

describe('TopicAcl.allows (a device publishes and subscribes in its own namespace)', () => {
  const acl = new TopicAcl('devices/{deviceId}/telemetry/{type}');
  it.each([
    ['d1', 'devices/d1/telemetry/gps', true],
    ['d1', 'devices/d1', true],
    ['d1', 'devices/d1/#', true],
    ['d1', 'devices/d2/telemetry/gps', false],
    ['d1', 'devices/d10/telemetry', false],
    ['d10', 'devices/d1/telemetry', false],
    ['d1', 'devices', false],
    ['d1', 'devices/+/commands', false],
    ['d1', '#', false],
    ['d1', 'other/d1/telemetry', false],
    // A device id with a slash names no single level.
    ['d1/x', 'devices/d1/x/telemetry', false],
  ])('%s may use %s: %s', (device, topic, want) => {
    expect(acl.allows(device, topic)).toBe(want);
  });
});
