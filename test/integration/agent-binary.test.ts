/**
 * The x64 single-file agent, built fresh from the tree (scripts/binaries),
 * end to end against a real Redis; and its install path (deploy/install.sh
 * into a board's root filesystem, deploy/streamfleet-agent.service). The ARM
 * binaries run the same agent suite under qemu in `npm run test:binaries`.
 */
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '#shared/config/load.js';
import { Keys } from '#shared/keys.js';
import { agentSchema, ENV_PREFIX } from '../../device/config.js';
import { buildBinaries, ROOT } from '../../scripts/binaries/build.js';
import { agentBinarySuite } from '../harness/agent-binary.js';
import { startAgentExecutable } from '../harness/agent-process.js';
import { randomPrefix } from '../harness/prefix.js';
import { type RedisServer, startRedis } from '../harness/redis-server.js';
import { waitFor } from '../harness/streams.js';

let outDir: string;
let file = '';
beforeAll(async () => {
  outDir = mkdtempSync(join(tmpdir(), 'agent-build-'));
  const result = await buildBinaries({ targets: ['linux-x64'], outDir });
  file = result.binaries[0]!.file;
}, 180_000);
afterAll(() => {
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

agentBinarySuite('linux-x64', () => file);

describe('install.sh and the systemd unit', () => {
  let server: RedisServer;
  let root: string;
  beforeAll(async () => {
    server = await startRedis({ local: true });
    // A board's root filesystem as an SD-card image holds it: the base system's user database.
    root = mkdtempSync(join(tmpdir(), 'board-root-'));
    mkdirSync(join(root, 'etc'));
    for (const f of ['passwd', 'group', 'shadow', 'gshadow', 'login.defs'])
      if (existsSync(`/etc/${f}`)) copyFileSync(`/etc/${f}`, join(root, 'etc', f));
  });
  afterAll(async () => {
    await server?.destroy();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const install = () =>
    spawnSync(
      'sh',
      [join(outDir, 'install.sh'), '--root', root, '--target', 'linux-x64', '--redis-url', server.url],
      {
        encoding: 'utf8',
      },
    );

  it('puts a service user, the binary, a config, the unit and a persistent state dir in place; the installed agent publishes', async () => {
    const r = install();
    expect(r.status, r.stderr).toBe(0);

    const user = readFileSync(join(root, 'etc/passwd'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('streamfleet:'));
    expect(user).toMatch(/:\/var\/lib\/streamfleet-agent:\/usr\/sbin\/nologin$/);
    const uid = Number(user!.split(':')[2]);

    const bin = join(root, 'usr/local/bin/streamfleet-agent');
    expect(readFileSync(bin).equals(readFileSync(file))).toBe(true);
    expect(statSync(bin).mode & 0o777).toBe(0o755);
    const state = statSync(join(root, 'var/lib/streamfleet-agent'));
    expect(state.uid).toBe(uid);
    expect(state.mode & 0o777).toBe(0o750);

    const configFile = join(root, 'etc/streamfleet/agent.yaml');
    const config = loadConfig(agentSchema, ENV_PREFIX, { file: configFile });
    expect(config['device.dataDir']).toBe('/var/lib/streamfleet-agent');
    expect(config['redis.url']).toBe(server.url);
    expect(existsSync(join(root, 'etc/streamfleet/agent.example.yaml'))).toBe(true);
    // No fixed id given: each board takes its own hostname, filled in by systemd.
    expect(
      readFileSync(join(root, 'etc/systemd/system/streamfleet-agent.service.d/device-id.conf'), 'utf8'),
    ).toContain('Environment=AGENT_DEVICE_ID=%H');
    // Enabled: the wants link points at the unit's path on the board (not on this machine).
    expect(
      readlinkSync(join(root, 'etc/systemd/system/multi-user.target.wants/streamfleet-agent.service')),
    ).toBe('/etc/systemd/system/streamfleet-agent.service');

    // The installed binary with the installed config (state dir and id as systemd would give them).
    const prefix = randomPrefix();
    const dataDir = mkdtempSync(join(tmpdir(), 'board-state-'));
    const agent = startAgentExecutable([bin], { config: configFile }, dataDir, {
      AGENT_DEVICE_ID: 'pi-installed',
      AGENT_DEVICE_DATA_DIR: dataDir,
      AGENT_REDIS_KEY_PREFIX: prefix,
    });
    const admin = server.client();
    try {
      const stream = new Keys(prefix, agentSchema['redis.partitions'].default).telemetryStreamFor(
        'pi-installed',
      );
      await waitFor(async () => (await admin.xlen(stream)) > 0, 30_000, 'telemetry from the installed agent');
      expect(await agent.kill('SIGTERM')).toBe(0);
    } finally {
      admin.disconnect();
      await agent.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('an update in place replaces the binary and keeps the board config', () => {
    const configFile = join(root, 'etc/streamfleet/agent.yaml');
    writeFileSync(configFile, `${readFileSync(configFile, 'utf8')}device.tags: [site-a]\n`);
    const before = readFileSync(configFile, 'utf8');
    const r = install();
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(configFile, 'utf8')).toBe(before);
  });

  it('the unit passes systemd-analyze verify with no warning', () => {
    const dir = mkdtempSync(join(tmpdir(), 'unit-'));
    try {
      const unit = readFileSync(join(ROOT, 'deploy/streamfleet-agent.service'), 'utf8');
      // verify checks that ExecStart exists: point it at the built binary.
      writeFileSync(
        join(dir, 'streamfleet-agent.service'),
        unit.replace('/usr/local/bin/streamfleet-agent', file),
      );
      const r = spawnSync('systemd-analyze', ['verify', join(dir, 'streamfleet-agent.service')], {
        encoding: 'utf8',
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
