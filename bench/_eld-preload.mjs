// Preload (node --import) for bench/_gateway-profile.ts --eld and bench/fleet.ts: reports this
// process's event-loop delay (perf_hooks.monitorEventLoopDelay) on stderr as one JSON line
// {"eld": {...}} on SIGUSR2 (then starts a new window) and when it exits.
// With BENCH_CPU_PROF_DIR set, SIGUSR2 also starts a CPU profile (inspector), the next SIGUSR2
// writes it there as <pid>-<n>.cpuprofile: a profile of one window, where --cpu-prof (not
// allowed in NODE_OPTIONS) would cover the whole life of the process.
// With BENCH_HEAP_PROF_DIR set, the same two signals take an allocation profile instead
// (<pid>-<n>.heapprofile): every sampled allocation of the window, collected garbage
// included, by the stack that made it, which is what drives scavenges and heap growth.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
const report = () => {
  const ms = (ns) => Number((ns / 1e6).toFixed(2));
  process.stderr.write(
    `${JSON.stringify({ eld: { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean) } })}\n`,
  );
};
const heapDir = process.env.BENCH_HEAP_PROF_DIR;
const profDir = process.env.BENCH_CPU_PROF_DIR ?? heapDir;
let session;
let profiles = 0;
const toggleProfile = () => {
  if (!session) {
    session = new Session();
    session.connect();
    if (heapDir)
      session.post('HeapProfiler.startSampling', {
        samplingInterval: 16384,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
    else session.post('Profiler.enable', () => session.post('Profiler.start'));
    return;
  }
  const s = session;
  session = undefined;
  const [method, extension] = heapDir
    ? ['HeapProfiler.stopSampling', 'heapprofile']
    : ['Profiler.stop', 'cpuprofile'];
  s.post(method, (err, res) => {
    if (!err)
      writeFileSync(`${profDir}/${process.pid}-${++profiles}.${extension}`, JSON.stringify(res.profile));
    s.disconnect();
  });
};
process.on('SIGUSR2', () => {
  report();
  h.reset();
  if (profDir) toggleProfile();
});
process.on('exit', report);
