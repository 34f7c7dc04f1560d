/**
 * The `debug` package as our bundled programs get it (shared/process/bundle.mjs
 * puts it in place of `debug` for every package that requires it: MQTT.js,
 * mqtt-packet, ioredis).
 *
 * Why: a logger of the real package is `function debug(...args)`, so every
 * call builds its arguments array before it finds it is disabled; mqtt-packet
 * and MQTT.js call it several times per packet. On the fleet benchmark that
 * was about a tenth of all the gateway's and the simulator's allocation
 * (allocation profile, bench/fleet.ts FLEET_BENCH_HEAP_PROF). A namespace
 * that DEBUG does not enable when its logger is made gets a function with no
 * rest parameter instead, which allocates nothing. One enabled by DEBUG gets
 * the real logger, so `DEBUG=mqttjs* npm run sim` prints as before; only
 * `debug.enable()` called at run time reaches no logger made before it.
 */
const real = require('debug');

function createDebug(namespace) {
  if (real.enabled(namespace)) return real(namespace);
  function off() {}
  off.enabled = false;
  off.namespace = namespace;
  off.log = off;
  off.extend = (sub, delimiter = ':') => createDebug(namespace + delimiter + sub);
  off.destroy = () => false;
  return off;
}
// Everything else (enable, disable, formatters, ...) is the real package's.
Object.setPrototypeOf(createDebug, real);
createDebug.default = createDebug;
module.exports = createDebug;
