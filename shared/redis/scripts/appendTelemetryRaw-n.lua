--[[
appendTelemetryRaw-n.lua: batched append with no idempotency check
(producer.idempotent = false). One call per batch is cheaper for Redis and the
client than one pipelined XADD per entry; a retried batch may duplicate.

KEYS[1]  telemetry partition stream          iot:telemetry:{pN}
KEYS[2..] latest-state hashes of the batch's devices, as KEYS[3..] of
         appendTelemetry-n.lua (none: no state is kept)
ARGV[1]  unused (keeps the argument layout of appendTelemetry-n.lua)
ARGV[2]  the batch as JSON, as for appendTelemetry-n.lua

Result: number of entries appended
]]

-- #include foldState

local stream = KEYS[1]
local batch = cjson.decode(ARGV[2])
-- State keys come in the order devices first appear in the batch; checked before any write.
local folds, foldOf = {}, {}
if #KEYS > 1 then
  for i = 1, #batch do
    local dev = batch[i][1]
    if not foldOf[dev] then
      local fold = { key = KEYS[#folds + 2], readings = {}, arrival = 0 }
      folds[#folds + 1] = fold
      foldOf[dev] = fold
    end
  end
  if #folds + 1 ~= #KEYS then
    return redis.error_reply('appendTelemetryRaw: ' .. (#KEYS - 1) .. ' state keys for ' .. #folds .. ' devices')
  end
end

for i = 1, #batch do
  local e = batch[i]
  local id = redis.call('XADD', stream, '*', 'd', e[1], 's', e[2], 't', e[3], 'k', e[4], 'v', e[5], 'p', e[6])
  local fold = foldOf[e[1]]
  if fold then
    fold.readings[#fold.readings + 1] = { tonumber(e[2]), e[2], e[3], e[4], e[6] }
    fold.arrival = tonumber(string.match(id, '^(%d+)'))
  end
end
for i = 1, #folds do
  foldState(folds[i].key, folds[i].arrival, folds[i].readings)
end
return #batch
