--[[
expireQueuedCommand-1.lua: end a command that nobody received as `expired`,
for a sweeper that does not consume the device's stream (the gateway's, for
agents and MQTT devices alike).

Only a command still `queued` is ended: one a device (agent or gateway) has
recorded as delivered or running is left to that consumer, which knows
whether it ran. The check and the write are one step, so the sweeper and a
device's beginCommand-1.lua can never both decide: whichever runs first wins,
and the other sees the outcome (beginCommand returns `done` with this result,
and the device republishes it once, never executes it).

KEYS[1]  the command's ledger            iot:{dev}:cmd:<id>
ARGV[1]  now (ms), the sweeper's clock
ARGV[2]  the command's deadline (ms)
ARGV[3]  ledger expiry, absolute ms (deadline + retention)
ARGV[4]  result fields (JSON array)

Result: { 1, result } when this call ended it; { 0, status } otherwise (status
"" when the ledger is gone; the deadline still ahead also gives 0).
]]

local key = KEYS[1]
local st = redis.call('HGET', key, 'st')
if st ~= 'queued' then return { 0, st or '' } end
if tonumber(ARGV[1]) <= tonumber(ARGV[2]) then return { 0, st } end
redis.call('HSET', key, 'st', 'expired', 'r', ARGV[4], 'at', 0)
redis.call('PEXPIREAT', key, ARGV[3])
return { 1, ARGV[4] }
