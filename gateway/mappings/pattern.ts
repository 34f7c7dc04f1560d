/**
 * Topic patterns with named parts: `tele/{device}/SENSOR`,
 * `{device}/status/switch:{index}`. A level is a literal, `+` (any one
 * level, unnamed), `#` (the rest, last level only) or text with `{name}`
 * parts, each capturing a non-empty piece of one level. Every level with a
 * named part becomes `+` in the MQTT subscription filter.
 */
import { MappingError } from './errors.js';

const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const PART = /\{([^{}]*)\}/g;

type Level =
  | { kind: 'literal'; text: string }
  | { kind: 'one' }
  | { kind: 'rest' }
  | { kind: 'named'; regex: RegExp; names: string[] };

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export class TopicPattern {
  private readonly levels: readonly Level[];
  /** Names of the named parts, in order. */
  readonly names: readonly string[];
  /** The MQTT subscription filter that covers every topic this pattern matches. */
  readonly filter: string;

  constructor(
    readonly pattern: string,
    source: string,
    field: string,
  ) {
    const fail = (detail: string) => new MappingError(source, field, `"${pattern}" ${detail}`);
    if (pattern === '') throw fail('is empty');
    const raw = pattern.split('/');
    const names: string[] = [];
    this.levels = raw.map((text, i) => {
      if (text === '+') return { kind: 'one' } as const;
      if (text === '#') {
        // [MQTT-4.7.1-2]: the multi-level wildcard is the last character of a filter.
        if (i !== raw.length - 1) throw fail('may have # only as its last level');
        return { kind: 'rest' } as const;
      }
      if (!text.includes('{')) {
        if (text.includes('+') || text.includes('#') || text.includes('}'))
          throw fail(`level "${text}": + and # stand alone in a level; use {name} to capture part of one`);
        return { kind: 'literal', text } as const;
      }
      const levelNames: string[] = [];
      let source = '^';
      let last = 0;
      const parts = [...text.matchAll(PART)];
      parts.forEach((m, j) => {
        const name = m[1]!;
        if (!NAME.test(name)) throw fail(`has a bad part name {${name}} (letters, digits, _)`);
        if (names.includes(name)) throw fail(`names {${name}} twice`);
        const literal = text.slice(last, m.index);
        if (j > 0 && literal === '') throw fail(`level "${text}": two parts need text between them`);
        source += escapeRegex(literal);
        // Lazy except the last part, so `{a}:{b}` splits at the first colon.
        source += j === parts.length - 1 ? '([^/]+)' : '([^/]+?)';
        last = m.index + m[0].length;
        levelNames.push(name);
        names.push(name);
      });
      const tail = text.slice(last);
      if (/[{}+#]/.test(text.replace(PART, ''))) throw fail(`level "${text}" has stray braces or wildcards`);
      source += `${escapeRegex(tail)}$`;
      return { kind: 'named', regex: new RegExp(source), names: levelNames } as const;
    });
    this.names = names;
    this.filter = this.levels
      .map((l) => (l.kind === 'literal' ? l.text : l.kind === 'rest' ? '#' : '+'))
      .join('/');
  }

  /** The named parts of a topic, or undefined when it does not match. */
  match(topic: string): Record<string, string> | undefined {
    const parts = topic.split('/');
    // [MQTT-4.7.2-1]: a wildcard at the first level does not match topics starting with $.
    if (topic.startsWith('$') && this.levels[0]?.kind !== 'literal') return undefined;
    const out: Record<string, string> = {};
    for (let i = 0; i < this.levels.length; i++) {
      const level = this.levels[i]!;
      if (level.kind === 'rest') return out; // # matches the parent level too [MQTT-4.7.1-2]
      const part = parts[i];
      if (part === undefined) return undefined;
      if (level.kind === 'literal') {
        if (part !== level.text) return undefined;
      } else if (level.kind === 'one') {
      } else {
        const m = level.regex.exec(part);
        if (!m) return undefined;
        level.names.forEach((name, j) => {
          out[name] = m[j + 1]!;
        });
      }
    }
    return parts.length === this.levels.length ? out : undefined;
  }
}
