--[[
finishCommand-1.lua: fix a command's one terminal result in its ledger.

The first terminal result wins; a later call (a redelivery, a second consumer
that claimed the entry) gets the stored one back and publishes that, so every
copy of the result is identical.

KEYS[1]  the command's ledger            iot:{dev}:cmd:<id>
ARGV[1]  ledger expiry, absolute ms (deadline + retention)
ARGV[2]  terminal status
ARGV[3]  result fields (JSON array)
ARGV[4]  attempts made (recorded as "at")

Result: { 1, result } when this call fixed it; { 0, storedResult } otherwise.
]]

-- #include isTerminal

local key = KEYS[1]
local st = redis.call('HGET', key, 'st')
if isTerminal(st) then
  return { 0, redis.call('HGET', key, 'r') or '' }
end
redis.call('HSET', key, 'st', ARGV[2], 'r', ARGV[3], 'at', ARGV[4])
redis.call('PEXPIREAT', key, ARGV[1])
return { 1, ARGV[3] }
