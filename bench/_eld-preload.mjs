// Preload for bench/_gateway-profile.ts --eld: reports this process's event-loop delay
// (perf_hooks.monitorEventLoopDelay) on stderr as one JSON line when it exits.
import { monitorEventLoopDelay } from 'node:perf_hooks';

const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
process.on('SIGUSR2', () => h.reset());
process.on('exit', () => {
  const ms = (ns) => Number((ns / 1e6).toFixed(2));
  process.stderr.write(
    `${JSON.stringify({ eld: { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean) } })}\n`,
  );
});
