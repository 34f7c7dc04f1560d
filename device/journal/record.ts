/**
 * The journal's record codec: one telemetry envelope per record, framed so a
 * reader can tell a whole record from a torn or corrupt one.
 *
 *   offset 0  u32 LE  body length in bytes
 *   offset 4  u32 LE  CRC-32 of the body
 *   offset 8  body:
 *               u8      record format (1)
 *               f64 LE  seq        (safe integers are exact in a double)
 *               f64 LE  time       (device time, ms since the epoch)
 *               u16 LE  envelope schema version
 *               u8      type length,      then the type (ASCII)
 *               u8      device id length, then the device id (ASCII)
 *               rest    payload JSON text (UTF-8), exactly as it will be appended
 *
 * The payload is kept as the text the envelope codec produced, so a replayed
 * entry is byte-for-byte the entry that would have been sent live.
 */
import type { EncodedEnvelope } from '#shared/envelope.js';
import { crc32 } from './crc32.js';

export const HEADER_BYTES = 8;
const FORMAT = 1;
/** format + seq + time + version + two length bytes + at least one char each of type and id. */
const MIN_BODY = 1 + 8 + 8 + 2 + 1 + 1 + 1 + 1;
/** Far above any valid envelope (payloads are capped at 64 KiB); a larger length is corruption. */
export const MAX_BODY = 1024 * 1024;

export function encodeRecord(e: EncodedEnvelope): Buffer {
  const payloadBytes = Buffer.byteLength(e.payload);
  const bodyBytes = 1 + 8 + 8 + 2 + 1 + e.type.length + 1 + e.deviceId.length + payloadBytes;
  const buf = Buffer.allocUnsafe(HEADER_BYTES + bodyBytes);
  let o = HEADER_BYTES;
  buf.writeUInt8(FORMAT, o++);
  buf.writeDoubleLE(e.seq, o);
  o += 8;
  buf.writeDoubleLE(e.time, o);
  o += 8;
  buf.writeUInt16LE(e.version, o);
  o += 2;
  // Type and device id are validated ASCII patterns of at most 32 and 64 characters.
  buf.writeUInt8(e.type.length, o++);
  o += buf.write(e.type, o, 'latin1');
  buf.writeUInt8(e.deviceId.length, o++);
  o += buf.write(e.deviceId, o, 'latin1');
  buf.write(e.payload, o, 'utf8');
  buf.writeUInt32LE(bodyBytes, 0);
  buf.writeUInt32LE(crc32(buf, HEADER_BYTES), 4);
  return buf;
}

export type DecodeResult =
  | { kind: 'record'; entry: EncodedEnvelope; size: number }
  /** Not enough bytes for the record its header announces (a torn tail, or more to read). */
  | { kind: 'incomplete' }
  /** Checksum mismatch or impossible header: the bytes from here on cannot be trusted. */
  | { kind: 'corrupt'; reason: string };

/** Decodes the record at buf[offset]. */
export function decodeRecord(buf: Buffer, offset: number): DecodeResult {
  if (buf.length - offset < HEADER_BYTES) return { kind: 'incomplete' };
  const len = buf.readUInt32LE(offset);
  if (len < MIN_BODY || len > MAX_BODY) return { kind: 'corrupt', reason: `impossible length ${len}` };
  const start = offset + HEADER_BYTES;
  const end = start + len;
  if (end > buf.length) return { kind: 'incomplete' };
  if (crc32(buf, start, end) !== buf.readUInt32LE(offset + 4)) {
    return { kind: 'corrupt', reason: 'checksum mismatch' };
  }
  let o = start;
  if (buf.readUInt8(o++) !== FORMAT) return { kind: 'corrupt', reason: 'unknown record format' };
  const seq = buf.readDoubleLE(o);
  o += 8;
  const time = buf.readDoubleLE(o);
  o += 8;
  const version = buf.readUInt16LE(o);
  o += 2;
  const typeLen = buf.readUInt8(o++);
  const type = buf.toString('latin1', o, o + typeLen);
  o += typeLen;
  const idLen = buf.readUInt8(o++);
  const deviceId = buf.toString('latin1', o, o + idLen);
  o += idLen;
  if (o > end) return { kind: 'corrupt', reason: 'field lengths exceed the record' };
  const payload = buf.toString('utf8', o, end);
  return { kind: 'record', entry: { deviceId, seq, time, type, version, payload }, size: HEADER_BYTES + len };
}
