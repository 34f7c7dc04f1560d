--[[
appendTelemetryRaw-n.lua: batched append with no idempotency check
(producer.idempotent = false). One call per batch is cheaper for Redis and the
client than one pipelined XADD per entry; a retried batch may duplicate.

One call carries the batches of one or more partitions, as appendTelemetry-n.lua.
For partition i of P, with k = the number of keys over P (1 or 2):

KEYS[k*(i-1)+1]  telemetry partition stream          iot:telemetry:{pN}
KEYS[k*(i-1)+2]  the partition's latest-state hash     iot:state:{pN} (only when k = 2, as
                 the state hash of appendTelemetry-n.lua: every entry is folded into it)
ARGV[1]    unused (keeps the argument layout of appendTelemetry-n.lua)
ARGV[1+i]  partition i's batch as JSON, as for appendTelemetry-n.lua

Result: number of entries appended
]]

-- #include foldState
-- #include eachPartition

local appended = 0

local function appendPartition(batchJson, stream, stateKey)
  local batch = cjson.decode(batchJson)
  -- Without a state hash nothing is folded, so no folds are collected either.
  local folds, foldOf
  if stateKey then folds, foldOf = foldsOf(batch) end
  for i = 1, #batch do
    local e = batch[i]
    local id = redis.call('XADD', stream, '*', 'd', e[1], 's', e[2], 't', e[3], 'k', e[4], 'v', e[5], 'p', e[6])
    if foldOf then foldAppended(foldOf[e[1]], e, id) end
  end
  if folds and #folds > 0 then foldState(stateKey, folds) end
  appended = appended + #batch
end

eachPartition(appendPartition)

return appended
