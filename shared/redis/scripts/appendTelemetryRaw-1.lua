--[[
appendTelemetryRaw-1.lua: batched append with no idempotency check
(producer.idempotent = false). One call per batch is cheaper for Redis and the
client than one pipelined XADD per entry; a retried batch may duplicate.

KEYS[1]  telemetry partition stream          iot:telemetry:{pN}
ARGV[1]  unused (keeps the argument layout of appendTelemetry-2.lua)
ARGV[2]  the batch as JSON, as for appendTelemetry-2.lua

Result: number of entries appended
]]

local stream = KEYS[1]
local n = 0
local batch = cjson.decode(ARGV[2])
for i = 1, #batch do
  local e = batch[i]
  redis.call('XADD', stream, '*', 'd', e[1], 's', e[2], 't', e[3], 'k', e[4], 'v', e[5], 'p', e[6])
  n = n + 1
end
return n
