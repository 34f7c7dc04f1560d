--[[
concludeCommand-6.lua: on a standalone server only, end a command in one
round trip: fix its terminal result in the ledger (first one wins), publish
the dead letter (when failed) and the result at most once each, and XACK.

It does in one atomic call what a cluster does in three steps
(finishCommand-1.lua in the device's slot, then publishOnce-2.lua for the
dead letter and for the result in the streams' own slots, then XACK): its keys
span several hash slots, which only a standalone server allows. The rules
are shared, not copied: lib/isTerminal.lua and lib/publishOnce.lua are
included here and in those scripts at load time.

When the ledger already holds a different terminal result (another consumer
or an earlier life fixed one first), nothing is published or acked: the
caller publishes the stored result with the cluster steps, because the dead
letter of a stored `failed` result is built from the original entry, which
only the caller holds, and the rare race needs no fast path.

KEYS[1]  the command's ledger            iot:{dev}:cmd:<id>
KEYS[2]  the results stream              iot:results
KEYS[3]  its publish marker              {iot:results}:pub:<dev>:<id>
KEYS[4]  the dead-letter stream          iot:deadletter
KEYS[5]  its publish marker              {iot:deadletter}:pub:<dev>:<id>
KEYS[6]  the device's command stream     iot:{dev}:commands
ARGV[1]  ledger expiry, absolute ms (deadline + retention)
ARGV[2]  terminal status
ARGV[3]  result fields (JSON array), the ledger's copy
ARGV[4]  attempts made (recorded as "at")
ARGV[5]  marker lifetime in ms (outlives any redelivery of the command)
ARGV[6]  approximate MAXLEN of the results stream (0 = no trimming)
ARGV[7]  consumer group
ARGV[8]  the command's stream entry id (to XACK)
ARGV[9]  N, the number of dead-letter fields that follow (0 unless failed)
ARGV[10] "" or, for a read-only command that started at once (no
         beginCommand before it), when it was received (ms), and then
ARGV[11] when it started (ms) and
ARGV[12] by which consumer: recorded with the result, as beginCommand would
         have recorded them ("" when ARGV[10] is "")
ARGV[13 .. 12+N]   the dead letter's fields
ARGV[13+N ..]      the result's fields (the same as ARGV[3], unencoded)

Result: { fixed, concluded, stored, resultAdded, deadLetterAdded }
  fixed      1 when this call fixed the result in the ledger, else 0
  concluded  1: published and acked; 0: the ledger holds another result,
             returned in stored (JSON), and nothing else was done
]]

-- #include isTerminal
-- #include argvFrom
-- #include publishOnce

local ledger = KEYS[1]
local st = redis.call('HGET', ledger, 'st')
local fixed = 0
if isTerminal(st) then
  local stored = redis.call('HGET', ledger, 'r')
  -- A terminal ledger without its copy: publish ours, as finishCommand's caller does.
  if stored and stored ~= '' and stored ~= ARGV[3] then return { 0, 0, stored, 0, 0 } end
else
  if ARGV[10] ~= '' then
    -- Started at once: its delivery and start are recorded now, with its result.
    if not redis.call('HGET', ledger, 'td') then redis.call('HSET', ledger, 'td', ARGV[10]) end
    redis.call('HSET', ledger, 'ts', ARGV[11], 'by', ARGV[12])
  end
  redis.call('HSET', ledger, 'st', ARGV[2], 'r', ARGV[3], 'at', ARGV[4])
  redis.call('PEXPIREAT', ledger, ARGV[1])
  fixed = 1
end

-- Publish once each, with the same fragment as publishOnce-2.lua: a marker in the stream's slot.
local n = tonumber(ARGV[9])
local deadLetterAdded = 0
-- The dead letter before the result: a sender that sees `failed` finds it.
if n > 0 then deadLetterAdded = publishOnce(KEYS[4], KEYS[5], ARGV[5], 0, argvFrom(13, 12 + n)) end
local resultAdded = publishOnce(KEYS[2], KEYS[3], ARGV[5], ARGV[6], argvFrom(13 + n))
-- Acknowledge only now: the result is in the ledger and in the results stream.
redis.call('XACK', KEYS[6], ARGV[7], ARGV[8])
return { fixed, 1, '', resultAdded, deadLetterAdded }
