/**
 * How the projection thread's code is loaded. The gateway runs from one
 * bundle (`npm run gateway`: scripts/launch.mjs) or, in tests, from its
 * TypeScript sources under tsx. Registering tsx again inside the worker (what
 * this replaced) gives the thread a loader of its own, with its own
 * module-hooks thread and the transformed sources of every module cached
 * there: about 38 MB of the idle gateway's 155 MB RSS. Instead the worker's
 * entry is bundled once at start (#shared/process/bundle.mjs) into one ES
 * module held in memory, with its packages inside: the thread then loads no
 * TypeScript and registers no loader. Either way this module's
 * `import.meta.url` is its source's, so the thread is bundled the same way. A
 * compiled build (the entry is `.js`) loads worker.js directly.
 */
import { fileURLToPath } from 'node:url';
import { bundleModule } from '#shared/process/bundle.mjs';

export type WorkerEntry = { kind: 'file'; url: URL } | { kind: 'code'; code: string };

let bundled: Promise<string> | undefined;

/** The worker's entry: worker.js next to this file, or worker.ts bundled into one module (once per process). */
export function projectionWorkerEntry(): Promise<WorkerEntry> {
  const here = new URL(import.meta.url);
  if (!here.pathname.endsWith('.ts'))
    return Promise.resolve({ kind: 'file', url: new URL('./worker.js', here) });
  bundled ??= bundleModule(fileURLToPath(new URL('./worker.ts', here)));
  return bundled.then((code) => ({ kind: 'code', code }));
}
