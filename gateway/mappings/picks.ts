/**
 * JSONPath-like field picks: `$` (the whole value), `$.ENERGY.Power`,
 * `$["switch:0"].apower`, `$.list[0]`, and `$.*.Temperature` (any member:
 * the first, in payload order, where the rest of the path finds something,
 * for vendors that name a sensor by its model, as Tasmota does).
 */
import { MappingError } from './errors.js';

type Step = { kind: 'key'; key: string } | { kind: 'index'; index: number } | { kind: 'any' };

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*/;

export class Pick {
  private readonly steps: readonly Step[];

  constructor(
    readonly path: string,
    source: string,
    field: string,
  ) {
    const fail = (detail: string) => new MappingError(source, field, `"${path}" ${detail}`);
    if (!path.startsWith('$')) throw fail('must start with $ (e.g. $.temperature)');
    const steps: Step[] = [];
    let rest = path.slice(1);
    while (rest !== '') {
      if (rest.startsWith('.*')) {
        steps.push({ kind: 'any' });
        rest = rest.slice(2);
      } else if (rest.startsWith('.')) {
        const m = IDENT.exec(rest.slice(1));
        if (!m) throw fail(`has a bad name after "." at "${rest}" (quote it: $["name"])`);
        steps.push({ kind: 'key', key: m[0] });
        rest = rest.slice(1 + m[0].length);
      } else if (rest.startsWith('[')) {
        const m = /^\[(?:(\d+)|"([^"]*)"|'([^']*)'|\*)\]/.exec(rest);
        if (!m) throw fail(`has a bad bracket at "${rest}" (use [0], ["name"] or [*])`);
        if (m[1] !== undefined) steps.push({ kind: 'index', index: Number(m[1]) });
        else if (m[2] !== undefined || m[3] !== undefined) steps.push({ kind: 'key', key: (m[2] ?? m[3])! });
        else steps.push({ kind: 'any' });
        rest = rest.slice(m[0].length);
      } else {
        throw fail(`has unexpected text "${rest}"`);
      }
    }
    this.steps = steps;
  }

  /** The value at the path, or undefined when the payload has none there (null counts as none). */
  from(value: unknown): unknown {
    return walk(value, this.steps, 0);
  }
}

function walk(value: unknown, steps: readonly Step[], i: number): unknown {
  if (value === null || value === undefined) return undefined;
  const step = steps[i];
  if (!step) return value;
  if (typeof value !== 'object') return undefined;
  if (step.kind === 'index') return Array.isArray(value) ? walk(value[step.index], steps, i + 1) : undefined;
  if (step.kind === 'key') {
    if (Array.isArray(value) || !Object.hasOwn(value, step.key)) return undefined;
    return walk((value as Record<string, unknown>)[step.key], steps, i + 1);
  }
  for (const member of Object.values(value)) {
    const found = walk(member, steps, i + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}
