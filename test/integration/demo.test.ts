/**
 * The README's main-job command (`npm start`, scripts/demo.ts) run as a child
 * process: it starts its own redis-server, the gateway with the dashboard and
 * a mixed fleet, shows progress and command results, and on SIGINT prints a
 * summary and leaves nothing running (no redis-server, no listening port, no
 * temporary directory).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import type { FleetView } from '../../gateway/dashboard/fleet.js';
import { launchBrowser, sendFromForm } from '../harness/browser.js';
import { captureOutput, spawnTracked, waitExit } from '../harness/process.js';
import { waitFor } from '../harness/streams.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' }, () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Processes listening on a port (ss -ltnp). The demo's ports are free ones,
 * so after it exits another program on this machine may take one: what
 * matters is that no process of the demo listens there.
 */
function listeners(port: number): number[] {
  const text = execFileSync('ss', ['-ltnpH', `sport = :${port}`], { encoding: 'utf8' });
  return [...text.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
}

function commandOf(pid: number): string {
  try {
    return execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Child process ids of `pid` (pgrep -P). */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

function pgrep(pattern: string): string {
  try {
    return execFileSync('pgrep', ['-af', pattern], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

it('runs the whole system, shows progress and command results, and stops cleanly on Ctrl-C', async () => {
  const env = { ...process.env };
  delete env.REDIS_URL;
  delete env.DEMO_REDIS_URL;
  const child = spawnTracked(
    process.execPath,
    [
      '--import',
      'tsx',
      'scripts/demo.ts',
      '--demo-agents',
      '2',
      '--demo-mqtt',
      '2',
      '--demo-command-interval',
      '300ms',
    ],
    { cwd: ROOT, env },
  );
  const out = captureOutput(child);
  const text = () => out.text();
  const demoPid = child.pid!;

  // Started: a throw-away Redis, the broker and the dashboard, each on a free port.
  await waitFor(async () => /^dashboard http:\/\//m.test(text()), 30_000, `the dashboard URL in:\n${text()}`);
  const redisMatch = /^redis\s+redis:\/\/127\.0\.0\.1:(\d+) \(throw-away, in (\S+)\)/m.exec(text());
  const brokerMatch = /MQTT broker mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(text());
  const dashMatch = /^dashboard (http:\/\/127\.0\.0\.1:(\d+)\/)/m.exec(text());
  expect(redisMatch, text()).not.toBeNull();
  expect(brokerMatch, text()).not.toBeNull();
  expect(dashMatch, text()).not.toBeNull();
  const redisPort = Number(redisMatch![1]);
  const redisDir = redisMatch![2]!;
  const ports = [redisPort, Number(brokerMatch![1]), Number(dashMatch![2])];
  expect(existsSync(redisDir)).toBe(true);

  // Live: progress lines with traffic, and command results.
  await waitFor(
    async () => /devices 4\/4 connected \| [1-9]\d* msg\/s/.test(text()),
    30_000,
    `a progress line with traffic in:\n${text()}`,
  );
  await waitFor(
    async () => /^command\s+\S+\s+-> \S+\s+\((agent|mqtt )\) succeeded/m.test(text()),
    30_000,
    `a command result in:\n${text()}`,
  );
  // The dashboard serves the demo's fleet.
  const fleet = (await (await fetch(`${dashMatch![1]}api/fleet`)).json()) as FleetView;
  expect(fleet.devices.map((d) => d.kind).sort()).toEqual(['agent', 'agent', 'mqtt', 'mqtt']);
  // And its page, in a real browser: the demo's devices, and a command from the form to its result.
  const browser = await launchBrowser();
  try {
    const page = browser.context.pages()[0] ?? (await browser.context.newPage());
    await page.goto(dashMatch![1]!);
    for (const d of fleet.devices)
      await page.locator(`#fleet tr[data-device="${d.id}"]`).waitFor({ timeout: 20_000 });
    expect(await page.locator('#c-devices').textContent()).toBe('4');
    for (const kind of ['agent', 'mqtt'] as const) {
      const target = fleet.devices.find((d) => d.kind === kind)!.id;
      const commandId = await sendFromForm(page, target, 'ping', '{}');
      // The outcome line names this command's device (the one before it named another).
      await expect
        .poll(() => page.locator('#cmd-outcome').textContent(), { timeout: 20_000 })
        .toMatch(new RegExp(`ping on ${target}: succeeded`));
      await page.locator(`#results tr[data-command="${commandId}"]`).waitFor({ timeout: 10_000 });
    }
  } finally {
    await browser.close();
  }

  const started = childrenOf(demoPid);
  const described = new Map(started.map((pid) => [pid, commandOf(pid)]));
  expect(started.length).toBeGreaterThan(0); // redis-server at least
  for (const port of ports) expect(await listening(port)).toBe(true);

  child.kill('SIGINT');
  const code = await waitExit(child, 30_000);
  expect(code, text()).toBe(0);
  expect(text()).toMatch(/^summary after \d+\.\d s$/m);
  expect(text()).toMatch(/^ {2}devices {6}4 \(2 agents, 2 MQTT\)/m);
  expect(text()).toMatch(/^ {2}audit {8}0 lost, 0 duplicates/m);
  expect(text()).toMatch(/^ {2}commands {5}\d+ sent: \d+ succeeded/m);
  expect(text()).not.toMatch(/^ {2}error/m);

  // Nothing it started is left: processes, ports, the Redis directory.
  // tsx's esbuild service (a child of every tsx program) ends when its pipe closes, a moment after the demo.
  await waitFor(
    async () => started.every((pid) => !alive(pid)),
    5000,
    `the demo's child processes to end: ${JSON.stringify([...described])}`,
  );
  expect([...described.values()].some((c) => c.startsWith('redis-server'))).toBe(true);
  expect(pgrep(redisDir)).toBe('');
  const ours = new Set([demoPid, ...started]);
  for (const port of ports) {
    expect(
      listeners(port).filter((pid) => ours.has(pid)),
      `port ${port} held by the demo`,
    ).toEqual([]);
  }
  expect(existsSync(redisDir)).toBe(false);
});

it('names the package to install when there is no redis-server and no REDIS_URL', async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: '/nonexistent' };
  delete env.REDIS_URL;
  const child = spawnTracked(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { cwd: ROOT, env });
  const out = captureOutput(child);
  const code = await waitExit(child, 30_000);
  expect(code).toBe(2);
  expect(out.text()).toMatch(
    /no redis-server on PATH; install it \(Debian\/Ubuntu: apt-get install redis-server\)/,
  );
});
