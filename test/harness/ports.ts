/** Free TCP ports on 127.0.0.1 (shared with the demo). */
export { freePort } from '#shared/process/ports.js';
