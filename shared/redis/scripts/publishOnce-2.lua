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

-- #include argvFrom
-- #include publishOnce

local added, id = publishOnce(KEYS[1], KEYS[2], ARGV[1], ARGV[2], argvFrom(3))
return { added, id }
