/**
 * Templates over a topic pattern's named parts: `tasmota-{device}`. A part
 * may be filtered: `{device|slug}` lowercases it and turns every run of
 * characters a device id or type may not hold into `-` (Zigbee2MQTT friendly
 * names have spaces).
 */
import { MappingError } from './errors.js';

const FILTERS = {
  slug: (s: string) =>
    s
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .replace(/^-+|-+$/g, ''),
  lower: (s: string) => s.toLowerCase(),
} as const;
type FilterName = keyof typeof FILTERS;

type Piece = string | { name: string; filter: FilterName | undefined };

export class Template {
  private readonly pieces: readonly Piece[];

  constructor(
    readonly template: string,
    names: readonly string[],
    source: string,
    field: string,
  ) {
    const fail = (detail: string) => new MappingError(source, field, `"${template}" ${detail}`);
    if (template === '') throw fail('is empty');
    const pieces: Piece[] = [];
    let last = 0;
    for (const m of template.matchAll(/\{([^{}]*)\}/g)) {
      if (m.index > last) pieces.push(template.slice(last, m.index));
      const [name, filter, ...more] = m[1]!.split('|').map((s) => s.trim());
      if (!name || !names.includes(name))
        throw fail(
          `uses {${m[1]}}, which the topic pattern does not name (it names: ${names.join(', ') || 'nothing'})`,
        );
      if (more.length > 0 || (filter !== undefined && !(filter in FILTERS)))
        throw fail(`has an unknown filter in {${m[1]}} (known: ${Object.keys(FILTERS).join(', ')})`);
      pieces.push({ name, filter: filter as FilterName | undefined });
      last = m.index + m[0].length;
    }
    if (last < template.length) pieces.push(template.slice(last));
    if (pieces.some((p) => typeof p === 'string' && /[{}]/.test(p))) throw fail('has stray braces');
    this.pieces = pieces;
  }

  render(parts: Readonly<Record<string, string>>): string {
    let out = '';
    for (const p of this.pieces) {
      if (typeof p === 'string') out += p;
      else {
        const v = parts[p.name] ?? '';
        out += p.filter ? FILTERS[p.filter](v) : v;
      }
    }
    return out;
  }
}
