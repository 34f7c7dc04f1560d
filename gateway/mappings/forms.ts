/**
 * Payload forms: how the bytes of a vendor payload become a value that picks
 * read. `json`: any JSON text. `number`: a bare number (`21.5`). `keyvalue`:
 * `key=value` pairs separated by spaces, commas or semicolons
 * (`temp=21.5,hum=40`), numbers where they parse as numbers.
 */

export const FORMS = ['json', 'number', 'keyvalue'] as const;
export type FormName = (typeof FORMS)[number];

/** The payload is not in the form the rule expects; `reason` says how. */
export class FormError extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

const asNumber = (text: string): number | undefined => (NUMBER.test(text) ? Number(text) : undefined);

export function parseForm(form: FormName, raw: Buffer): unknown {
  const text = raw.toString('utf8').trim();
  switch (form) {
    case 'json':
      try {
        return JSON.parse(text);
      } catch {
        throw new FormError('payload is not JSON');
      }
    case 'number': {
      const n = asNumber(text);
      if (n === undefined || !Number.isFinite(n))
        throw new FormError(`payload ${JSON.stringify(text.slice(0, 32))} is not a number`);
      return n;
    }
    case 'keyvalue': {
      const out: Record<string, string | number> = {};
      const tokens = text.split(/[\s,;]+/).filter((t) => t !== '');
      if (tokens.length === 0) throw new FormError('payload has no key=value pairs');
      for (const token of tokens) {
        const eq = token.indexOf('=');
        if (eq <= 0) throw new FormError(`"${token.slice(0, 32)}" is not key=value`);
        const value = token.slice(eq + 1);
        out[token.slice(0, eq)] = asNumber(value) ?? value;
      }
      return out;
    }
  }
}
