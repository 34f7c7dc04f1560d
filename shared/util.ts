/** Small typed helpers with no better home. */

/** Object.keys with the key type kept. */
export function keysOf<T extends object>(obj: T): Array<keyof T & string> {
  return Object.keys(obj) as Array<keyof T & string>;
}
