/**
 * Vendor topic and payload mappings (docs/mappings.md): the set the gateway
 * runs with (option `mapping`), its subscription filters, and how one
 * message resolves, counted per mapping and outcome.
 */
import { Counter, type Registry } from '#shared/metrics.js';
import { loadMapping } from './loader.js';
import { type Mapping, type MappingOutcome, resolve } from './rule.js';

export { MappingError } from './errors.js';
export { builtinMappings, compileMapping, loadMapping } from './loader.js';
export type { MappedReading, Mapping, MappingOutcome } from './rule.js';

export class MappingSet {
  private readonly outcomes: Counter<'mapping' | 'outcome'>;

  constructor(
    readonly mappings: readonly Mapping[],
    registry: Registry,
  ) {
    this.outcomes = new Counter({
      name: 'gateway_mapped_messages_total',
      help: 'Messages taken by a vendor mapping, by mapping and outcome (readings, ignored, rejected)',
      labelNames: ['mapping', 'outcome'],
      registers: [registry],
    });
  }

  /** Loads each built-in name or file path of the `mapping` option. */
  static load(namesOrPaths: readonly string[], registry: Registry): MappingSet {
    return new MappingSet(
      namesOrPaths.map((n) => loadMapping(n)),
      registry,
    );
  }

  get names(): string[] {
    return this.mappings.map((m) => m.name);
  }

  /**
   * Subscription filters of the rules that write or reject (bridge mode);
   * ignore rules need none. Duplicates are left out: a broker delivers one
   * copy per matching subscription, so two equal filters would double entries.
   */
  filters(): string[] {
    const out = new Set<string>();
    for (const m of this.mappings) for (const r of m.rules) if (!r.ignore) out.add(r.pattern.filter);
    return [...out];
  }

  /** The first mapping whose rules match the topic decides; `none` when no mapping's does. */
  resolve(topic: string, payload: Buffer): MappingOutcome {
    for (const m of this.mappings) {
      const outcome = resolve(m, topic, payload);
      if (outcome.kind === 'none') continue;
      this.outcomes.inc({ mapping: m.name, outcome: outcome.kind });
      return outcome;
    }
    return { kind: 'none' };
  }
}
