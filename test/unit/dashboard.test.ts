/** The dashboard's pure parts: the bounded history ring and the API's input validation. */
import { describe, expect, it } from 'vitest';
import { ApiError, intParam, parseCommandRequest } from '../../gateway/dashboard/api.js';
import { Ring } from '../../gateway/dashboard/history.js';

describe('Ring', () => {
  it('keeps the newest items up to its capacity, oldest first', () => {
    const ring = new Ring<number>(3);
    expect(ring.last()).toEqual([]);
    expect(ring.latest()).toBeUndefined();
    for (let i = 1; i <= 7; i++) ring.push(i);
    expect(ring.size).toBe(3);
    expect(ring.last()).toEqual([5, 6, 7]);
    expect(ring.last(2)).toEqual([6, 7]);
    expect(ring.last(10)).toEqual([5, 6, 7]);
    expect(ring.latest()).toBe(7);
  });

  it('refuses a capacity below one', () => {
    expect(() => new Ring(0)).toThrow(RangeError);
  });
});

describe('parseCommandRequest', () => {
  const parse = (body: unknown) => parseCommandRequest(body, 30_000);
  const refusal = (body: unknown): ApiError => {
    try {
      parse(body);
    } catch (err) {
      if (err instanceof ApiError) return err;
      throw err;
    }
    throw new Error('accepted');
  };

  it('accepts a command and fills in defaults', () => {
    expect(parse({ deviceId: 'pi-1', name: 'ping' })).toEqual({
      deviceId: 'pi-1',
      name: 'ping',
      args: {},
      ttlMs: 30_000,
    });
    expect(
      parse({ deviceId: 'pi-1', name: 'set-interval', args: { sensor: 'gps', interval: 500 }, ttlMs: 5000 }),
    ).toEqual({
      deviceId: 'pi-1',
      name: 'set-interval',
      args: { sensor: 'gps', interval: 500 },
      ttlMs: 5000,
    });
  });

  it.each([
    [null, undefined, /JSON object/],
    [[1], undefined, /JSON object/],
    [{ deviceId: 'pi-1', name: 'ping', arguments: {} }, 'arguments', /unknown field "arguments"/],
    [{ name: 'ping' }, 'deviceId', /deviceId must match/],
    [{ deviceId: 'pi{1}', name: 'ping' }, 'deviceId', /deviceId must match/],
    [{ deviceId: 'pi-1', name: 'rm -rf' }, 'name', /name must match/],
    [{ deviceId: 'pi-1', name: 'ping', args: [1] }, 'args', /args must be a JSON object/],
    [{ deviceId: 'pi-1', name: 'ping', args: 'x' }, 'args', /args must be a JSON object/],
    [{ deviceId: 'pi-1', name: 'ping', ttlMs: 10 }, 'ttlMs', /ttlMs must be an integer in 1000\.\.3600000/],
    [{ deviceId: 'pi-1', name: 'ping', ttlMs: 1500.5 }, 'ttlMs', /ttlMs/],
    [{ deviceId: 'pi-1', name: 'ping', ttlMs: '5000' }, 'ttlMs', /ttlMs/],
  ])('refuses %j naming the field', (body, field, message) => {
    const err = refusal(body);
    expect(err.status).toBe(400);
    expect(err.field).toBe(field);
    expect(err.message).toMatch(message);
  });
});

describe('intParam', () => {
  const params = (q: string) => new URLSearchParams(q);
  it('reads a bounded integer or the default', () => {
    expect(intParam(params(''), 'limit', 50, 1, 200)).toBe(50);
    expect(intParam(params('limit=7'), 'limit', 50, 1, 200)).toBe(7);
  });
  it.each(['limit=0', 'limit=201', 'limit=-1', 'limit=1.5', 'limit=abc'])('refuses %s', (q) => {
    expect(() => intParam(params(q), 'limit', 50, 1, 200)).toThrow(/"limit" must be an integer in 1\.\.200/);
  });
});
