/**
 * Declarative config schemas. Each option declares its type, its default, the
 * environment variable and flag that may set it, and a line of documentation;
 * docs/config.md is generated from these declarations (npm run docs:config), so
 * a default is written exactly once.
 */

interface BaseSpec<T> {
  readonly default: T;
  readonly doc: string;
  /** Environment variable that sets it; defaults to <ENV_PREFIX>_<KEY>. */
  readonly env?: string;
  /** Hide the value in logs and dumps. */
  readonly secret?: boolean;
}

export interface StringSpec extends BaseSpec<string> {
  readonly type: 'string';
}
export interface OptionalStringSpec extends BaseSpec<string | undefined> {
  readonly type: 'optionalString';
}
export interface NumberSpec extends BaseSpec<number> {
  readonly type: 'integer' | 'number' | 'duration' | 'size';
  readonly min?: number;
  readonly max?: number;
}
export interface BooleanSpec extends BaseSpec<boolean> {
  readonly type: 'boolean';
}
export interface EnumSpec<V extends string = string> extends BaseSpec<V> {
  readonly type: 'enum';
  readonly values: readonly V[];
}
export interface ListSpec extends BaseSpec<readonly string[]> {
  readonly type: 'list';
}

export type OptionSpec = StringSpec | OptionalStringSpec | NumberSpec | BooleanSpec | EnumSpec | ListSpec;
export type Schema = Readonly<Record<string, OptionSpec>>;

/** The typed values a schema yields. */
export type ConfigOf<S extends Schema> = { -readonly [K in keyof S]: S[K]['default'] };

/** Helpers that keep schema literals short and typed. */
export const opt = {
  string: (d: string, doc: string, extra: Partial<StringSpec> = {}): StringSpec => ({
    type: 'string',
    default: d,
    doc,
    ...extra,
  }),
  optionalString: (doc: string, extra: Partial<OptionalStringSpec> = {}): OptionalStringSpec => ({
    type: 'optionalString',
    default: undefined,
    doc,
    ...extra,
  }),
  integer: (d: number, doc: string, extra: Partial<NumberSpec> = {}): NumberSpec => ({
    type: 'integer',
    default: d,
    doc,
    ...extra,
  }),
  number: (d: number, doc: string, extra: Partial<NumberSpec> = {}): NumberSpec => ({
    type: 'number',
    default: d,
    doc,
    ...extra,
  }),
  duration: (d: number, doc: string, extra: Partial<NumberSpec> = {}): NumberSpec => ({
    type: 'duration',
    default: d,
    doc,
    ...extra,
  }),
  size: (d: number, doc: string, extra: Partial<NumberSpec> = {}): NumberSpec => ({
    type: 'size',
    default: d,
    doc,
    ...extra,
  }),
  boolean: (d: boolean, doc: string, extra: Partial<BooleanSpec> = {}): BooleanSpec => ({
    type: 'boolean',
    default: d,
    doc,
    ...extra,
  }),
  enum: <V extends string>(
    values: readonly V[],
    d: V,
    doc: string,
    extra: Partial<EnumSpec<V>> = {},
  ): EnumSpec<V> => ({
    type: 'enum',
    values,
    default: d,
    doc,
    ...extra,
  }),
  list: (d: readonly string[], doc: string, extra: Partial<ListSpec> = {}): ListSpec => ({
    type: 'list',
    default: d,
    doc,
    ...extra,
  }),
};

/** "producer.batchMaxEntries" -> "PRODUCER_BATCH_MAX_ENTRIES" */
export function envName(envPrefix: string, key: string): string {
  const snake = key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[.-]/g, '_')
    .toUpperCase();
  return envPrefix ? `${envPrefix}_${snake}` : snake;
}

/** "producer.batchMaxEntries" -> "producer-batch-max-entries" */
export function flagName(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/\./g, '-')
    .toLowerCase();
}
