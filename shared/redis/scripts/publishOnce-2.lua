--[[
publishOnce-2.lua: append an entry to a shared stream at most once per key.

The results and dead-letter streams are global (one slot), while a command's
ledger lives in its device's slot; a script may touch one slot only. So the
terminal result is first fixed in the ledger (finishCommand-1.lua) and then
published here, guarded by a marker key in the stream's own slot: a worker
that crashes between the two steps, or two workers racing over one command,
publish it once. The marker's hash tag is the stream's full name, so
"{iot:results}:pub:..." hashes to the same slot as "iot:results".

KEYS[1]  the stream                      iot:results | iot:deadletter
KEYS[2]  the marker                      {iot:results}:pub:<dev>:<id>
ARGV[1]  marker lifetime in ms (outlives any redelivery of the command)
ARGV[2]  approximate MAXLEN of the stream (0 = no trimming)
ARGV[3..] the entry's fields

Result: { 1, entryId } when appended; { 0, entryId } when it was already there.
]]

local existing = redis.call('GET', KEYS[2])
if existing then return { 0, existing } end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local id
if tonumber(ARGV[2]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
else
  id = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return { 1, id }
