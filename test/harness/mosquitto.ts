/** A real mosquitto broker on a free port, in a temporary directory. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { freePort } from './ports.js';
import { captureOutput, spawnTracked, waitExit, waitForPort } from './process.js';

export interface MosquittoBroker {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  stop(): Promise<void>;
}

/** `extraConfig` lines are appended to the generated mosquitto.conf. */
export async function startMosquitto(extraConfig: string[] = []): Promise<MosquittoBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-mosquitto-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${dir}/`,
      'max_queued_messages 100000',
      ...extraConfig,
      '',
    ].join('\n'),
  );
  const child = spawnTracked('mosquitto', ['-c', conf]);
  const out = captureOutput(child);
  try {
    await waitForPort(port);
  } catch (err) {
    throw new Error(`mosquitto did not start: ${(err as Error).message}\n${out.text()}`);
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await waitExit(child);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A mosquitto for the tests of one file: started before them, stopped after them (read it inside tests). */
export function useMosquitto(): MosquittoBroker {
  let broker: MosquittoBroker | undefined;
  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(async () => {
    await broker?.stop();
  });
  const started = (): MosquittoBroker => {
    if (!broker) throw new Error('useMosquitto: read the broker inside tests');
    return broker;
  };
  return {
    get port() {
      return started().port;
    },
    get url() {
      return started().url;
    },
    get dir() {
      return started().dir;
    },
    stop: () => started().stop(),
  };
}
