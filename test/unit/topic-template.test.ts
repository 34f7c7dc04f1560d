import { expect, it } from 'vitest';
import { TopicTemplate } from '../../gateway/mapping.js';

it('takes the device and type of a topic with the template levels, literal levels equal', () => {
  const t = new TopicTemplate('devices/{deviceId}/telemetry/{type}', 'gateway.telemetryTopic');
  expect(t.match('devices/dev-1/telemetry/gps')).toEqual({ deviceId: 'dev-1', type: 'gps' });
  expect(t.match('devices/dev-1/telemetry/')).toEqual({ deviceId: 'dev-1', type: '' });
  for (const topic of [
    'devices/dev-1/telemetry',
    'devices/dev-1/telemetry/gps/extra',
    'devices//telemetry/gps',
    'device/dev-1/telemetry/gps',
    'devicesx/dev-1/telemetry/gps',
    'devices/dev-1/telemetr/gps',
    'devices/dev-1/telemetryy/gps',
    '',
  ])
    expect(t.match(topic), topic).toBeUndefined();
});

it('matches templates with the device last, without a type, or a single level', () => {
  const status = new TopicTemplate('status/{deviceId}', 'gateway.statusTopic');
  expect(status.match('status/a')).toEqual({ deviceId: 'a', type: undefined });
  expect(status.match('status/a/b')).toBeUndefined();
  expect(status.match('status/')).toBeUndefined();
  const bare = new TopicTemplate('{deviceId}', 'x');
  expect(bare.match('dev-9')).toEqual({ deviceId: 'dev-9', type: undefined });
  expect(bare.match('dev-9/x')).toBeUndefined();
  const typeFirst = new TopicTemplate('{type}/{deviceId}/up', 'x');
  expect(typeFirst.match('temp/d1/up')).toEqual({ deviceId: 'd1', type: 'temp' });
  expect(typeFirst.match('temp/d1/down')).toBeUndefined();
});
