-- lib/publishOnce.lua (a fragment: scripts include it by name): append an
-- entry to a shared stream at most once per marker key. The marker lives in the
-- stream's slot ("{iot:results}:pub:<dev>:<id>" hashes like "iot:results") and
-- holds the entry id, so a repeat gets the first entry's id back.
--   stream, marker  keys of the stream and of its marker
--   ttlMs           marker lifetime (outlives any redelivery of the command)
--   maxLen          approximate MAXLEN of the stream (0 = no trimming)
--   fields          the entry's fields, a flat Lua array
-- Returns added (1 appended now, 0 already there), entryId.
local function publishOnce(stream, marker, ttlMs, maxLen, fields)
  local existing = redis.call('GET', marker)
  if existing then return 0, existing end
  local id
  if tonumber(maxLen) > 0 then
    id = redis.call('XADD', stream, 'MAXLEN', '~', maxLen, '*', unpack(fields))
  else
    id = redis.call('XADD', stream, '*', unpack(fields))
  end
  redis.call('SET', marker, id, 'PX', ttlMs)
  return 1, id
end
