/**
 * A real Sparkplug B edge node for tests: the simulator's (firmware-sim's
 * SparkplugNode, its protobuf payloads from the schema in shared/sparkplug),
 * over a real MQTT connection to the gateway's broker or to mosquitto.
 */
import { systemClock } from '#shared/clock.js';
import { silentLogger } from '#shared/log.js';
import { KindStats, SparkplugNode, type SparkplugNodeOptions } from '../../firmware-sim/fleet.js';

export type EdgeNode = SparkplugNode;

/** Starts (connects and births) an edge node; `periodMs` 0: it sends only what the test asks. */
export async function startEdgeNode(
  options: Pick<SparkplugNodeOptions, 'group' | 'node' | 'url'> & Partial<SparkplugNodeOptions>,
): Promise<EdgeNode> {
  const stats = new KindStats();
  const node = new SparkplugNode(
    { devices: ['d1', 'd2'], metricsPerDevice: 3, periodMs: 0, ...options },
    stats,
    systemClock,
    silentLogger(),
  );
  await node.start();
  return node;
}
