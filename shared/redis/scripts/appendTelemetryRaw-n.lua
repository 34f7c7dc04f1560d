--[[
appendTelemetryRaw-n.lua: batched append with no idempotency check
(producer.idempotent = false). One call per batch is cheaper for Redis and the
client than one pipelined XADD per entry; a retried batch may duplicate.

KEYS[1]  telemetry partition stream          iot:telemetry:{pN}
KEYS[2]  the partition's latest-state hash     iot:state:{pN} (optional, as KEYS[3] of
         appendTelemetry-n.lua: every entry is folded into it)
ARGV[1]  unused (keeps the argument layout of appendTelemetry-n.lua)
ARGV[2]  the batch as JSON, as for appendTelemetry-n.lua

Result: number of entries appended
]]

-- #include foldState

local stream, stateKey = KEYS[1], KEYS[2]
local batch = cjson.decode(ARGV[2])
-- Without a state hash nothing is folded, so no folds are collected either.
local folds, foldOf
if stateKey then folds, foldOf = foldsOf(batch) end
for i = 1, #batch do
  local e = batch[i]
  local id = redis.call('XADD', stream, '*', 'd', e[1], 's', e[2], 't', e[3], 'k', e[4], 'v', e[5], 'p', e[6])
  if foldOf then foldAppended(foldOf[e[1]], e, id, tonumber(e[2])) end
end
if folds and #folds > 0 then foldState(stateKey, folds) end
return #batch
