/** MQTT topic filters as the gateway's broker needs them beside aedes (gateway/broker.ts). */

/**
 * Whether a subscription filter matches a topic [MQTT-4.7.1]: `+` is one
 * level, a trailing `#` the parent level and every level below it. Topics
 * starting with `$` match no filter starting with a wildcard [MQTT-4.7.2-1].
 */
export function filterMatches(filter: string, topic: string): boolean {
  // Most filters name one topic (a device's commands), and this runs per publish: no split() for them.
  if (!filter.includes('+') && !filter.includes('#')) return filter === topic;
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const want = filter.split('/');
  const got = topic.split('/');
  for (let i = 0; i < want.length; i++) {
    const level = want[i];
    if (level === '#') return i === want.length - 1;
    if (i >= got.length) return false;
    if (level !== '+' && level !== got[i]) return false;
  }
  return want.length === got.length;
}
