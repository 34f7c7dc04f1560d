--[[
enqueueCommand-3.lua: queue a command for a device, once per command id, and
ring the gateways' doorbell in the same step.

The ledger key is created with status "queued" in the same step as the stream
entry, so a sender that retries (lost reply) does not queue the command twice,
and a sender waiting for the result can tell "queued" from "delivered".

The doorbell (shared/commands/send.ts, ringDoorbell) is a global stream, in
another hash slot than the device's keys: only a standalone server lets one
script write both. A Cluster passes the command stream again as KEYS[3] with
ARGV[3] = 0 and rings with its own XADD once the entry exists.

KEYS[1]  the device's command stream     iot:{dev}:commands
KEYS[2]  the command's ledger            iot:{dev}:cmd:<id>   (same hash slot)
KEYS[3]  the doorbell stream             iot:commands:doorbell (standalone)
ARGV[1]  ledger expiry, absolute ms (deadline + retention)
ARGV[2]  now (ms), recorded as the queued time
ARGV[3]  approximate MAXLEN of the doorbell; 0: do not ring
ARGV[4]  the device id (the doorbell's entry)
ARGV[5..] the command's stream fields

Result: { 1, entryId } when queued; { 0, status } when the id was already known
(nothing is appended, nothing rings).
]]

-- #include argvFrom

local status = redis.call('HGET', KEYS[2], 'st')
if status then return { 0, status } end
local id = redis.call('XADD', KEYS[1], '*', unpack(argvFrom(5)))
redis.call('HSET', KEYS[2], 'st', 'queued', 'tq', ARGV[2], 'e', id)
redis.call('PEXPIREAT', KEYS[2], ARGV[1])
if ARGV[3] ~= '0' then redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'd', ARGV[4]) end
return { 1, id }
