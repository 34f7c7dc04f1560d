/**
 * Sparkplug B payloads (Eclipse Sparkplug 3.0, section 6.4): encode and decode
 * with protobufjs on the schema in schema.ts, and each metric's value read
 * from the field its datatype names.
 *
 * Integers: Int8/16/32 travel in the uint32 `int_value` as two's complement
 * [tck-id-payloads-metric-datatype-value-type] and are sign-extended here;
 * Int64, UInt64 and DateTime travel in the uint64 `long_value`. A 64-bit value
 * that a JavaScript number holds exactly (|v| <= 2^53 - 1) decodes to a
 * number, a larger one to its decimal string, so nothing is rounded and every
 * value stays JSON. Bytes and File values decode to base64 text.
 */
import Long from 'long';
import protobuf from 'protobufjs';
import { SparkplugPayloadError } from '../errors.js';
import { SPARKPLUG_B_PROTO } from './schema.js';

// protobufjs finds `long` by a require at run time; set it, so bundles (the binaries) decode 64-bit fields too.
protobuf.util.Long = Long;
protobuf.configure();

/** The spec's DataType numbers (section 6.4.16). */
export const DataType = {
  Unknown: 0,
  Int8: 1,
  Int16: 2,
  Int32: 3,
  Int64: 4,
  UInt8: 5,
  UInt16: 6,
  UInt32: 7,
  UInt64: 8,
  Float: 9,
  Double: 10,
  Boolean: 11,
  String: 12,
  DateTime: 13,
  Text: 14,
  UUID: 15,
  DataSet: 16,
  Bytes: 17,
  File: 18,
  Template: 19,
} as const;
export type DataTypeName = keyof typeof DataType;
export type DataTypeNumber = (typeof DataType)[DataTypeName];

const NAMES = new Map<number, DataTypeName>(
  Object.entries(DataType).map(([name, n]) => [n, name as DataTypeName]),
);

/** The datatype's name, or undefined for a number the spec does not define. */
export function dataTypeName(n: number): DataTypeName | undefined {
  return NAMES.get(n);
}

/** A DataSet value: column names and types, rows of decoded cells. */
export interface DataSetValue {
  columns: string[];
  types: DataTypeName[];
  rows: MetricValue[][];
}

/** A decoded value: numbers, booleans, strings (also 64-bit integers too large for a number, and base64 bytes). */
export type MetricValue = number | boolean | string | null | DataSetValue;

export interface SparkplugMetric {
  /** Sent in births; data messages may carry only the alias. */
  name?: string;
  alias?: number;
  /** Acquisition time, ms since the epoch. */
  timestamp?: number;
  datatype: number;
  /** null when the metric says is_null, or carries no value. */
  value: MetricValue;
  isHistorical?: boolean;
  isTransient?: boolean;
}

export interface SparkplugPayload {
  /** Sending time, ms since the epoch. */
  timestamp?: number;
  /** 0..255; NDEATH has none. */
  seq?: number;
  metrics: SparkplugMetric[];
  uuid?: string;
}

const root = protobuf.parse(SPARKPLUG_B_PROTO, { keepCase: false }).root;
const PayloadType = root.lookupType('org.eclipse.tahu.protobuf.Payload');

/** The value fields of a decoded DataSet cell; `value` names the oneof field that is set. */
interface RawDataSetValue {
  value?: string;
  intValue?: number;
  longValue?: Long | number;
  floatValue?: number;
  doubleValue?: number;
  booleanValue?: boolean;
  stringValue?: string;
}

/** The fields of a decoded protobufjs Metric message that this codec reads: a cell's, and more. */
interface RawMetric extends RawDataSetValue {
  name?: string;
  alias?: Long | number;
  timestamp?: Long | number;
  datatype?: number;
  isHistorical?: boolean;
  isTransient?: boolean;
  isNull?: boolean;
  bytesValue?: Uint8Array;
  datasetValue?: RawDataSet;
}

interface RawDataSet {
  numOfColumns?: Long | number;
  columns?: string[];
  types?: number[];
  rows?: Array<{ elements?: RawDataSetValue[] }>;
}

interface RawPayload {
  timestamp?: Long | number;
  seq?: Long | number;
  uuid?: string;
  metrics?: RawMetric[];
}

const has = (o: object, field: string) => Object.hasOwn(o, field);

/** A uint64 field as a number, exactly, or an error naming the field. */
function safeNumber(v: Long | number, field: string): number {
  if (typeof v === 'number') return v;
  const n = v.toNumber();
  if (!Number.isSafeInteger(n)) throw new SparkplugPayloadError(`${field} ${v.toString()} is over 2^53`);
  return n;
}

/** A 64-bit integer as a number when exact, else as its decimal text. */
function exact(v: Long | number, signed: boolean): number | string {
  if (typeof v === 'number') return v;
  const l = signed ? v.toSigned() : v.toUnsigned();
  const n = l.toNumber();
  return Number.isSafeInteger(n) ? n : l.toString();
}

/** Decodes a Sparkplug B payload; throws SparkplugPayloadError for anything that is not one. */
export function decodeSparkplug(bytes: Uint8Array): SparkplugPayload {
  let raw: RawPayload;
  try {
    raw = PayloadType.decode(bytes) as unknown as RawPayload;
  } catch (err) {
    throw new SparkplugPayloadError(`not a Sparkplug B protobuf (${(err as Error).message})`);
  }
  const out: SparkplugPayload = { metrics: [] };
  if (has(raw, 'timestamp') && raw.timestamp !== undefined)
    out.timestamp = safeNumber(raw.timestamp, 'timestamp');
  if (has(raw, 'seq') && raw.seq !== undefined) {
    const seq = safeNumber(raw.seq, 'seq');
    if (seq > 255) throw new SparkplugPayloadError(`seq ${seq} is over 255`);
    out.seq = seq;
  }
  if (has(raw, 'uuid')) out.uuid = raw.uuid;
  for (const m of raw.metrics ?? []) out.metrics.push(decodeMetric(m));
  return out;
}

function decodeMetric(m: RawMetric): SparkplugMetric {
  const datatype = m.datatype ?? DataType.Unknown;
  const metric: SparkplugMetric = { datatype, value: null };
  if (has(m, 'name')) metric.name = m.name;
  if (has(m, 'alias') && m.alias !== undefined) metric.alias = safeNumber(m.alias, 'alias');
  if (has(m, 'timestamp') && m.timestamp !== undefined)
    metric.timestamp = safeNumber(m.timestamp, 'metric timestamp');
  if (m.isHistorical) metric.isHistorical = true;
  if (m.isTransient) metric.isTransient = true;
  if (!m.isNull && m.value !== undefined)
    metric.value = readValue(m, datatype, m.name ?? `alias ${metric.alias}`);
  return metric;
}

/** The value in the field a datatype names; a value in another field is an error. */
function readValue(m: RawMetric | RawDataSetValue, datatype: number, what: string): MetricValue {
  const field = m.value;
  const want = (f: string) => {
    if (field !== f)
      throw new SparkplugPayloadError(
        `metric ${what}: datatype ${dataTypeName(datatype) ?? datatype} carries its value in ${f}, not ${field}`,
      );
  };
  switch (datatype) {
    case DataType.Int8:
      want('intValue');
      return ((m.intValue ?? 0) << 24) >> 24;
    case DataType.Int16:
      want('intValue');
      return ((m.intValue ?? 0) << 16) >> 16;
    case DataType.Int32:
      want('intValue');
      return (m.intValue ?? 0) | 0;
    case DataType.UInt8:
    case DataType.UInt16:
    case DataType.UInt32:
      want('intValue');
      return (m.intValue ?? 0) >>> 0;
    case DataType.Int64:
      want('longValue');
      return exact(m.longValue ?? 0, true);
    case DataType.UInt64:
    case DataType.DateTime:
      want('longValue');
      return exact(m.longValue ?? 0, false);
    case DataType.Float:
      want('floatValue');
      return m.floatValue ?? 0;
    case DataType.Double:
      want('doubleValue');
      return m.doubleValue ?? 0;
    case DataType.Boolean:
      want('booleanValue');
      return m.booleanValue ?? false;
    case DataType.String:
    case DataType.Text:
    case DataType.UUID:
      want('stringValue');
      return m.stringValue ?? '';
    case DataType.Bytes:
    case DataType.File:
      want('bytesValue');
      return Buffer.from((m as RawMetric).bytesValue ?? new Uint8Array()).toString('base64');
    case DataType.DataSet:
      want('datasetValue');
      return decodeDataSet((m as RawMetric).datasetValue ?? {}, what);
    default:
      throw new SparkplugPayloadError(
        `metric ${what}: datatype ${dataTypeName(datatype) ?? datatype} is not supported (docs/sparkplug.md)`,
      );
  }
}

function decodeDataSet(d: RawDataSet, what: string): DataSetValue {
  const columns = d.columns ?? [];
  const types = d.types ?? [];
  if (types.length !== columns.length)
    throw new SparkplugPayloadError(
      `metric ${what}: DataSet has ${columns.length} columns, ${types.length} types`,
    );
  const names = types.map((t) => {
    const name = dataTypeName(t);
    if (name === undefined || t === DataType.DataSet || t === DataType.Template || t >= DataType.Bytes)
      throw new SparkplugPayloadError(`metric ${what}: DataSet column type ${t} is not supported`);
    return name;
  });
  const rows = (d.rows ?? []).map((r) => {
    const cells = r.elements ?? [];
    if (cells.length !== columns.length)
      throw new SparkplugPayloadError(
        `metric ${what}: DataSet row of ${cells.length} cells, not ${columns.length}`,
      );
    return cells.map((c, i) =>
      c.value === undefined ? null : readValue(c, types[i]!, `${what} column ${i}`),
    );
  });
  return { columns, types: names, rows };
}

// ---- Encoding (edge nodes of the simulator and tests; the gateway's NCMD/DCMD) ----

/** A metric to encode: `value` as decoded (64-bit integers may also be bigint). */
export interface MetricInput {
  name?: string;
  alias?: number;
  timestamp?: number;
  datatype: number;
  value: MetricValue | bigint;
}

export interface PayloadInput {
  timestamp?: number;
  seq?: number;
  metrics: readonly MetricInput[];
}

const toLong = (v: MetricValue | bigint, signed: boolean) => {
  if (typeof v !== 'bigint' && typeof v !== 'number' && typeof v !== 'string')
    throw new SparkplugPayloadError(`a 64-bit integer value must be a number, bigint or decimal string`);
  return Long.fromString(String(v), !signed).toUnsigned();
};

function encodeValue(m: MetricInput): Record<string, unknown> {
  const v = m.value;
  if (v === null) return { isNull: true };
  switch (m.datatype) {
    case DataType.Int8:
    case DataType.Int16:
    case DataType.Int32:
    case DataType.UInt8:
    case DataType.UInt16:
    case DataType.UInt32:
      return { intValue: Number(v) >>> 0 };
    case DataType.Int64:
      return { longValue: toLong(v, true) };
    case DataType.UInt64:
    case DataType.DateTime:
      return { longValue: toLong(v, false) };
    case DataType.Float:
      return { floatValue: Number(v) };
    case DataType.Double:
      return { doubleValue: Number(v) };
    case DataType.Boolean:
      return { booleanValue: v === true };
    case DataType.String:
    case DataType.Text:
    case DataType.UUID:
      return { stringValue: String(v) };
    case DataType.Bytes:
    case DataType.File:
      return { bytesValue: Buffer.from(String(v), 'base64') };
    case DataType.DataSet: {
      const d = v as DataSetValue;
      return {
        datasetValue: {
          numOfColumns: d.columns.length,
          columns: d.columns,
          types: d.types.map((t) => DataType[t]),
          rows: d.rows.map((r) => ({
            elements: r.map((cell, i) => encodeValue({ datatype: DataType[d.types[i]!], value: cell })),
          })),
        },
      };
    }
    default:
      throw new SparkplugPayloadError(`datatype ${m.datatype} cannot be encoded here`);
  }
}

export function encodeSparkplug(p: PayloadInput): Buffer {
  const metrics = p.metrics.map((m) => ({
    ...(m.name !== undefined ? { name: m.name } : {}),
    ...(m.alias !== undefined ? { alias: m.alias } : {}),
    ...(m.timestamp !== undefined ? { timestamp: m.timestamp } : {}),
    datatype: m.datatype,
    ...encodeValue(m),
  }));
  const message = PayloadType.fromObject({
    ...(p.timestamp !== undefined ? { timestamp: p.timestamp } : {}),
    ...(p.seq !== undefined ? { seq: p.seq } : {}),
    metrics,
  });
  return Buffer.from(PayloadType.encode(message).finish());
}
