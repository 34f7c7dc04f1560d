/**
 * Commands to Sparkplug devices (docs/sparkplug.md): a command sent to
 * `<group>:<node>` goes out as NCMD, to `<group>:<node>:<device>` as DCMD,
 * with one metric: `args.metric` (default: the command's name) = `args.value`
 * (default: true), of `args.datatype` (default: Boolean for a boolean, Int64
 * for an integer, Double for another number, String for text). Sparkplug has
 * no command results: the command ends `succeeded` once the broker took it,
 * with the topic it went to as output.
 */
import { DataType, type DataTypeName, encodeSparkplug, type MetricValue } from '#shared/sparkplug/codec.js';
import { deviceTopic, nodeTopic, splitDeviceId } from '#shared/sparkplug/topic.js';
import type { CommandRoute, RoutedCommand } from '../services.js';
import type { NodeSessions } from './session.js';

export class SparkplugCommands implements CommandRoute {
  constructor(
    private readonly sessions: NodeSessions,
    private readonly now: () => number,
  ) {}

  route(deviceId: string, command: { name: string; args: unknown }): RoutedCommand | undefined {
    const ids = splitDeviceId(deviceId);
    // Only ids of edge nodes this gateway has heard from: `a:b` may be a plain MQTT device too.
    if (!ids || !this.sessions.get(`${ids.group}/${ids.node}`)) return undefined;
    const args = (typeof command.args === 'object' && command.args !== null ? command.args : {}) as Record<
      string,
      unknown
    >;
    const name = typeof args.metric === 'string' ? args.metric : command.name;
    const value = (args.value ?? true) as MetricValue;
    const datatype =
      typeof args.datatype === 'string' && args.datatype in DataType
        ? DataType[args.datatype as DataTypeName]
        : typeof value === 'boolean'
          ? DataType.Boolean
          : typeof value === 'number'
            ? Number.isInteger(value)
              ? DataType.Int64
              : DataType.Double
            : DataType.String;
    const now = this.now();
    const payload = encodeSparkplug({ timestamp: now, metrics: [{ name, timestamp: now, datatype, value }] });
    const topic =
      ids.device === undefined
        ? nodeTopic(ids.group, 'NCMD', ids.node)
        : deviceTopic(ids.group, 'DCMD', ids.node, ids.device);
    // QoS 0, as the spec has hosts send NCMD/DCMD [tck-id-topics-ncmd-qos, tck-id-topics-dcmd-qos].
    return { topic, payload, qos: 0 };
  }
}
