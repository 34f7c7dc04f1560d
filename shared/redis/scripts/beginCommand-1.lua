--[[
beginCommand-1.lua: the Redis half of the deduplication ledger. Records that a
device received a command and decides, atomically, whether a handler may start.

One key per (device, command id), with its own expiry: nothing grows without
bound and no expiry is pushed forward for other commands.

KEYS[1]  the command's ledger            iot:{dev}:cmd:<id>
ARGV[1]  now (ms)
ARGV[2]  the command's deadline (ms)
ARGV[3]  ledger expiry, absolute ms (deadline + retention)
ARGV[4]  consumer name
ARGV[5]  mode: "deliver" (mark received only), "start", or "restart" (start
         although an earlier attempt was left running: the caller proved it
         harmless from its journal, or the handler is idempotent)

Ledger fields: st status, tq queued, td delivered, ts started, at attempts,
by consumer, r the terminal result (JSON array of result fields).

Result: { code, attempts, deliveredAt, payload }
  code "done"      already terminal; payload = stored result fields (JSON)
  code "expired"   past its deadline and never started: never start it
  code "lapsed"    past its deadline, but an earlier attempt started and never
                   finished: never start it again, and it is not `expired`
                   (that says it never ran): it may have taken effect
  code "running"   an earlier attempt started and never finished
  code "started"   recorded as running; the caller may execute it now
  code "delivered" (mode deliver) recorded as received
]]

-- #include isTerminal

local key = KEYS[1]
local now = ARGV[1]
local st = redis.call('HGET', key, 'st')
if isTerminal(st) then
  return { 'done', 0, 0, redis.call('HGET', key, 'r') or '' }
end
local td = redis.call('HGET', key, 'td')
if not td then
  td = now
  redis.call('HSET', key, 'td', now)
  if not st or st == 'queued' then
    st = 'delivered'
    redis.call('HSET', key, 'st', st)
  end
  redis.call('PEXPIREAT', key, ARGV[3])
end
local at = tonumber(redis.call('HGET', key, 'at') or '0')
if tonumber(now) > tonumber(ARGV[2]) then
  -- An attempt that started is checked before the deadline: a command killed
  -- mid-run and read again after its deadline did run (docs/commands.md).
  if st == 'running' then return { 'lapsed', at, td, '' } end
  return { 'expired', at, td, '' }
end
local mode = ARGV[5]
if mode == 'deliver' then return { 'delivered', at, td, '' } end
if st == 'running' and mode ~= 'restart' then return { 'running', at, td, '' } end
at = at + 1
redis.call('HSET', key, 'st', 'running', 'ts', now, 'at', at, 'by', ARGV[4])
return { 'started', at, td, '' }
