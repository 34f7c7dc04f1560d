--[[
enqueueCommand-2.lua: queue a command for a device, once per command id.

The ledger key is created with status "queued" in the same step as the stream
entry, so a sender that retries (lost reply) does not queue the command twice,
and a sender waiting for the result can tell "queued" from "delivered".

KEYS[1]  the device's command stream     iot:{dev}:commands
KEYS[2]  the command's ledger            iot:{dev}:cmd:<id>   (same hash slot)
ARGV[1]  ledger expiry, absolute ms (deadline + retention)
ARGV[2]  now (ms), recorded as the queued time
ARGV[3..] the command's stream fields

Result: { 1, entryId } when queued; { 0, status } when the id was already known.
]]

local status = redis.call('HGET', KEYS[2], 'st')
if status then return { 0, status } end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('HSET', KEYS[2], 'st', 'queued', 'tq', ARGV[2], 'e', id)
redis.call('PEXPIREAT', KEYS[2], ARGV[1])
return { 1, id }
