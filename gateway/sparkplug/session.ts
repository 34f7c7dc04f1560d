/**
 * What the gateway remembers of each Sparkplug edge node (Eclipse Sparkplug
 * 3.0, section 5 "Operational behavior"): the bdSeq of its current birth
 * certificate, the seq of its last message, the alias table its NBIRTH and
 * DBIRTHs set up (aliases are unique across a node and its devices
 * [tck-id-payloads-alias-uniqueness]), which of its devices are online, and
 * when it was last asked to rebirth.
 *
 * Memory: at most `maxNodes` nodes; a birth moves a node to the back, and
 * past the cap the front one (least recently born) is forgotten. A forgotten
 * node is asked to rebirth when next heard, as after a gateway restart.
 */

export interface NodeSession {
  /** True once an NBIRTH was taken; false for a node only heard of (asked to rebirth). */
  born: boolean;
  bdSeq: number | undefined;
  /** seq of the last message taken (0..255). */
  lastSeq: number | undefined;
  /** Payload timestamp of that message: with its seq, what tells a redelivery from a new message. */
  lastTimestamp: number | undefined;
  /** Alias -> metric name and datatype, from the node's and its devices' births. */
  readonly aliases: Map<number, { name: string; datatype: number }>;
  /** Devices (their Sparkplug ids) born and not dead. */
  readonly devices: Set<string>;
  /** When a rebirth was last requested (ms), 0 = never. */
  rebirthAt: number;
}

/** seq that must follow `seq`: 0..255, 255 wraps to 0 [tck-id-payloads-sequence-num-incrementing]. */
export const nextSeq = (seq: number) => (seq + 1) & 0xff;

export class NodeSessions {
  private readonly nodes = new Map<string, NodeSession>();

  constructor(private readonly maxNodes: number) {}

  get size(): number {
    return this.nodes.size;
  }

  get(nodeKey: string): NodeSession | undefined {
    return this.nodes.get(nodeKey);
  }

  /** The node's session, created (not born) when it has none. */
  touch(nodeKey: string): NodeSession {
    let s = this.nodes.get(nodeKey);
    if (!s) {
      s = {
        born: false,
        bdSeq: undefined,
        lastSeq: undefined,
        lastTimestamp: undefined,
        aliases: new Map(),
        devices: new Set(),
        rebirthAt: 0,
      };
      this.add(nodeKey, s);
    }
    return s;
  }

  /**
   * An NBIRTH: a new session (aliases and devices of the previous one are
   * void [tck-id-operational-behavior-edge-node-birth-sequence]), at the back
   * of the eviction order. The rebirth time is kept, so requests stay spaced.
   */
  birth(
    nodeKey: string,
    bdSeq: number | undefined,
    seq: number | undefined,
    timestamp: number | undefined,
  ): NodeSession {
    const old = this.nodes.get(nodeKey);
    this.nodes.delete(nodeKey);
    const s: NodeSession = {
      born: true,
      bdSeq,
      lastSeq: seq,
      lastTimestamp: timestamp,
      aliases: new Map(),
      devices: new Set(),
      rebirthAt: old?.rebirthAt ?? 0,
    };
    this.add(nodeKey, s);
    return s;
  }

  /** An NDEATH of the current birth: the session ends. */
  death(nodeKey: string): void {
    this.nodes.delete(nodeKey);
  }

  private add(nodeKey: string, s: NodeSession): void {
    if (this.nodes.size >= this.maxNodes) {
      const oldest = this.nodes.keys().next();
      if (!oldest.done) this.nodes.delete(oldest.value);
    }
    this.nodes.set(nodeKey, s);
  }
}
