import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { systemClock } from '#shared/clock.js';
import { silentLogger } from '#shared/log.js';
import { FallbackPoll, POLL_STEP_MS } from '../../gateway/commands/poll.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function poller(devices: string[], cycleMs: { ms: number }) {
  const reads: Array<{ at: number; device: string }> = [];
  const start = Date.now();
  const poll = new FallbackPoll({
    clock: systemClock,
    logger: silentLogger(),
    devices: () => devices,
    read: async (device) => {
      reads.push({ at: Date.now() - start, device });
    },
    cycleMs: () => cycleMs.ms,
  });
  return { poll, reads };
}

it('reads every device at start, then each once per cycle, spread over the cycle', async () => {
  const devices = Array.from({ length: 100 }, (_, i) => `d${i}`);
  const { poll, reads } = poller(devices, { ms: 2000 });
  poll.start();
  await vi.advanceTimersByTimeAsync(0);
  expect(reads.length).toBe(100);
  reads.length = 0;
  await vi.advanceTimersByTimeAsync(2000 + POLL_STEP_MS);
  // The next cycle: every device once, not all in one step.
  const first = reads.filter((r) => r.at <= 2000 + 2 * POLL_STEP_MS).length;
  await vi.advanceTimersByTimeAsync(2000);
  const cycle = reads.slice(0, 100);
  expect(new Set(cycle.map((r) => r.device)).size).toBe(100);
  const perStep = new Map<number, number>();
  for (const r of cycle) perStep.set(r.at, (perStep.get(r.at) ?? 0) + 1);
  expect(Math.max(...perStep.values())).toBeLessThanOrEqual(10);
  expect(first).toBeLessThan(100);
  poll.stop();
});

it('runs its cycles at the interval of the moment (fast while the doorbell fails)', async () => {
  const devices = ['a', 'b', 'c', 'd'];
  const cycle = { ms: 30_000 };
  const { poll, reads } = poller(devices, cycle);
  poll.start();
  await vi.advanceTimersByTimeAsync(0);
  reads.length = 0;
  await vi.advanceTimersByTimeAsync(10_000);
  expect(reads.length).toBe(0); // slow cycle: none due yet in the second cycle's first third
  cycle.ms = 500;
  await vi.advanceTimersByTimeAsync(30_000);
  // With a 500 ms cycle each device is read about once per 500 ms from here on.
  expect(reads.filter((r) => r.device === 'a').length).toBeGreaterThan(30);
  poll.stop();
  const n = reads.length;
  await vi.advanceTimersByTimeAsync(5000);
  expect(reads.length).toBe(n);
});
