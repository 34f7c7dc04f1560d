/** shared/health.ts: states are asked at every report, losses hold for health.lossWindow after the last one. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type Clock, systemClock } from '#shared/clock.js';
import { HEALTH_CODES, HealthBook, healthSchema, joinHealth } from '#shared/health.js';
import { createRegistry, serveMetrics } from '#shared/metrics.js';

function manualClock(start = Date.UTC(2026, 0, 1)): Clock & { advance(ms: number): void } {
  let now = start;
  return {
    ...systemClock,
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('HealthBook', () => {
  it('a loss holds for the window after the last one, with the count and times, then clears', () => {
    const clock = manualClock();
    const book = new HealthBook(10_000, clock);
    const dropped = book.loss('presence-dropped', 'presence events dropped');
    expect(book.report()).toEqual({ healthy: true, reasons: [] });

    dropped.hit(5);
    clock.advance(4000);
    dropped.hit(3, 'device d-1');
    let h = book.report();
    expect(h.healthy).toBe(false);
    expect(h.reasons).toHaveLength(1);
    expect(h.reasons[0]).toMatchObject({
      code: 'presence-dropped',
      count: 8,
      since: '2026-01-01T00:00:00.000Z',
      last: '2026-01-01T00:00:04.000Z',
    });
    expect(h.reasons[0]?.message).toMatch(/^8 presence events dropped since .*\(device d-1\).*10 s/);

    // The window counts from the last loss, not the first.
    clock.advance(9999);
    expect(book.report().healthy).toBe(false);
    clock.advance(1);
    expect(book.report()).toEqual({ healthy: true, reasons: [] });

    // A loss after a quiet window starts a new count.
    dropped.hit(2);
    h = book.report();
    expect(h.reasons[0]).toMatchObject({ count: 2, since: '2026-01-01T00:00:14.000Z' });
  });

  it('a state is asked at every report and keeps the time it was first seen', () => {
    const clock = manualClock();
    const book = new HealthBook(10_000, clock);
    let behind = 0;
    book.state('projection-lag', () =>
      behind > 5 ? { message: `${behind} behind`, count: behind } : undefined,
    );
    expect(book.report().healthy).toBe(true);
    behind = 9;
    clock.advance(1000);
    expect(book.report().reasons).toEqual([
      { code: 'projection-lag', message: '9 behind', count: 9, since: '2026-01-01T00:00:01.000Z' },
    ]);
    behind = 12;
    clock.advance(1000);
    expect(book.report().reasons[0]).toMatchObject({ count: 12, since: '2026-01-01T00:00:01.000Z' });
    // Cleared at once: a state has no window.
    behind = 0;
    expect(book.report()).toEqual({ healthy: true, reasons: [] });
  });

  it('joins included components: unhealthy if any is, with every reason', () => {
    const book = new HealthBook(1000, manualClock());
    book.loss('publishes-refused', 'publishes refused').hit();
    book.include(() => ({ healthy: true, reasons: [] }));
    book.include(() => ({ healthy: false, reasons: [{ code: 'projection-stopped', message: 'gone' }] }));
    const h = book.report();
    expect(h.healthy).toBe(false);
    expect(h.reasons.map((r) => r.code)).toEqual(['publishes-refused', 'projection-stopped']);
    expect(joinHealth([])).toEqual({ healthy: true, reasons: [] });
  });

  it('one code is one condition: asked twice, a book gives the same one (two producers count as one)', () => {
    const book = new HealthBook(1000, manualClock());
    book.loss('sequence-forgotten', 'numbers forgotten').hit(2);
    book.loss('sequence-forgotten', 'numbers forgotten').hit(3);
    expect(book.report().reasons).toMatchObject([{ code: 'sequence-forgotten', count: 5 }]);
  });

  it('defaults the window to health.lossWindow, and every code is documented in docs/operator.md', () => {
    expect(healthSchema['health.lossWindow'].default).toBe(60_000);
    const doc = readFileSync(new URL('../../docs/operator.md', import.meta.url), 'utf8');
    for (const code of HEALTH_CODES) expect(doc, code).toContain(`\`${code}\``);
  });
});

describe('/healthz', () => {
  it('answers 503 with the reasons while unhealthy, 200 otherwise', async () => {
    const clock = manualClock();
    const book = new HealthBook(1000, clock);
    const refused = book.loss('publishes-refused', 'publishes refused');
    const server = await serveMetrics(createRegistry({}, false), 0, '127.0.0.1', () => book.report());
    const get = async () => {
      const res = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      return { status: res.status, body: (await res.json()) as unknown };
    };
    try {
      expect(await get()).toEqual({ status: 200, body: { healthy: true, reasons: [] } });
      refused.hit(2);
      const r = await get();
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ healthy: false, reasons: [{ code: 'publishes-refused', count: 2 }] });
      clock.advance(1000);
      expect((await get()).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
