--[[
expireQueuedCommand-2.lua: end a command that nobody received as `expired`,
for a sweeper that does not consume the device's stream (the gateway's, for
agents and MQTT devices alike).

Only a command still `queued` is ended: one a device (agent or gateway) has
recorded as delivered or running is left to that consumer, which knows
whether it ran. The check and the write are one step, so the sweeper and a
device's beginCommand-1.lua can never both decide: whichever runs first wins,
and the other sees the outcome (beginCommand returns `done` with this result,
and the device republishes it once, never executes it).

For an agent the consumer group is a record of receipt too: an entry that a
group has read (its last-delivered id is at or past it) was received, even
while the ledger still says `queued` (a read-only command starts as soon as
it is read and records its receipt with its result), so it is not expired.

KEYS[1]  the command's ledger            iot:{dev}:cmd:<id>
KEYS[2]  the device's command stream     iot:{dev}:commands
ARGV[1]  now (ms), the sweeper's clock
ARGV[2]  the command's deadline (ms)
ARGV[3]  ledger expiry, absolute ms (deadline + retention)
ARGV[4]  result fields (JSON array)
ARGV[5]  the command's entry id, to check the stream's groups; "" not to
         (an MQTT device's group is the gateway's: reading is not receipt)

Result: { 1, result } when this call ended it; { 0, status } otherwise (status
"" when the ledger is gone; the deadline still ahead also gives 0; status
"received" when a group has read the entry).
]]

local key = KEYS[1]
local st = redis.call('HGET', key, 'st')
if st ~= 'queued' then return { 0, st or '' } end
if tonumber(ARGV[1]) <= tonumber(ARGV[2]) then return { 0, st } end
if ARGV[5] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  local function parse(id)
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(ms), tonumber(seq)
  end
  local ems, eseq = parse(ARGV[5])
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
    for i = 1, #group, 2 do
      if group[i] == 'last-delivered-id' then
        local ms, seq = parse(group[i + 1])
        if ms > ems or (ms == ems and seq >= eseq) then return { 0, 'received' } end
      end
    end
  end
end
redis.call('HSET', key, 'st', 'expired', 'r', ARGV[4], 'at', 0)
redis.call('PEXPIREAT', key, ARGV[3])
return { 1, ARGV[4] }
