/**
 * The gateway's command delivery to MQTT devices (public surface). Files in
 * the order a command meets them: doorbell.ts and poll.ts, delivery.ts, held.ts,
 * transport.ts, intake.ts, ending.ts (-> shared/commands/conclude.ts), sweeper.ts;
 * options.ts holds the options and fixed limits.
 */
export { CommandDelivery } from './delivery.js';
export { COMMAND_GROUP, type CommandOptions, DEFAULT_COMMAND_OPTIONS } from './options.js';
export { type CommandTransport, mqttJsonTransport } from './transport.js';
