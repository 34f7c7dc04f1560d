/** A random key prefix per test, so tests share a server without flushing it. */
import { randomBytes } from 'node:crypto';

export function randomPrefix(): string {
  return `t${randomBytes(4).toString('hex')}`;
}
