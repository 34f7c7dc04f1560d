/**
 * The device library's public face: what other components (firmware-sim runs
 * many simulated agents in one process) may use of the agent. Anything not
 * exported here is the agent's own and may change without notice.
 */
export { builtinHandlers, type CommandHandler, HandlerRegistry } from './commands/handlers.js';
export { CommandJournal } from './commands/journal.js';
export { type CommandMetrics, createCommandMetrics } from './commands/metrics.js';
export { commandSchema } from './commands/options.js';
export { CommandWorker } from './commands/worker.js';
export { workerOptions } from './commands/worker-options.js';
export { seededRandom } from './sensors/sensor.js';
export { DeviceTelemetry, type TelemetrySink } from './telemetry.js';
