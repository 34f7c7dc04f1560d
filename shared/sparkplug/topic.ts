/**
 * Sparkplug B topics (Eclipse Sparkplug 3.0, section 4.1):
 * `spBv1.0/<group_id>/<message_type>/<edge_node_id>[/<device_id>]`, and the
 * host application's `spBv1.0/STATE/<host_id>`. Group, node and device ids are
 * single topic levels without `+`, `#` or `/` [tck-id-topic-structure].
 */
export const NAMESPACE = 'spBv1.0';

export const NODE_TYPES = ['NBIRTH', 'NDATA', 'NDEATH', 'NCMD'] as const;
export const DEVICE_TYPES = ['DBIRTH', 'DDATA', 'DDEATH', 'DCMD'] as const;
export type NodeMessageType = (typeof NODE_TYPES)[number];
export type DeviceMessageType = (typeof DEVICE_TYPES)[number];
export type MessageType = NodeMessageType | DeviceMessageType;

export type SparkplugTopic =
  | { kind: 'node'; group: string; type: NodeMessageType; node: string }
  | { kind: 'device'; group: string; type: DeviceMessageType; node: string; device: string }
  | { kind: 'state'; hostId: string };

const isId = (s: string | undefined): s is string => s !== undefined && s !== '' && !/[+#]/.test(s);

/** Whether a topic is in the Sparkplug B namespace at all (parse may still refuse it). */
export function isSparkplugTopic(topic: string): boolean {
  return topic.startsWith(`${NAMESPACE}/`);
}

/** A Sparkplug B topic, or undefined when it is none (or malformed). */
export function parseTopic(topic: string): SparkplugTopic | undefined {
  const parts = topic.split('/');
  if (parts[0] !== NAMESPACE) return undefined;
  if (parts[1] === 'STATE')
    return parts.length === 3 && isId(parts[2]) ? { kind: 'state', hostId: parts[2] } : undefined;
  const [, group, type, node, device] = parts;
  if (!isId(group) || !isId(node)) return undefined;
  if (parts.length === 4 && (NODE_TYPES as readonly string[]).includes(type ?? ''))
    return { kind: 'node', group, type: type as NodeMessageType, node };
  if (parts.length === 5 && isId(device) && (DEVICE_TYPES as readonly string[]).includes(type ?? ''))
    return { kind: 'device', group, type: type as DeviceMessageType, node, device };
  return undefined;
}

export function nodeTopic(group: string, type: NodeMessageType, node: string): string {
  return `${NAMESPACE}/${group}/${type}/${node}`;
}

export function deviceTopic(group: string, type: DeviceMessageType, node: string, device: string): string {
  return `${NAMESPACE}/${group}/${type}/${node}/${device}`;
}

export function stateTopic(hostId: string): string {
  return `${NAMESPACE}/STATE/${hostId}`;
}

/** Subscription filter for a group's messages, or every group's ('#' for all). */
export function groupFilter(group: string | undefined): string {
  return group === undefined ? `${NAMESPACE}/#` : `${NAMESPACE}/${group}/#`;
}

/** The streamfleet device id of an edge node (`<group>:<node>`) or of one of its devices (`<group>:<node>:<device>`). */
export function sparkplugDeviceId(group: string, node: string, device?: string): string {
  return device === undefined ? `${group}:${node}` : `${group}:${node}:${device}`;
}

/** The Sparkplug names behind a device id of sparkplugDeviceId (ids containing ':' are ambiguous: undefined). */
export function splitDeviceId(
  deviceId: string,
): { group: string; node: string; device: string | undefined } | undefined {
  const parts = deviceId.split(':');
  if (parts.length !== 2 && parts.length !== 3) return undefined;
  if (!parts.every((p) => p !== '')) return undefined;
  return { group: parts[0]!, node: parts[1]!, device: parts[2] };
}
