--[[
projectState-1.lua: folds telemetry readings of one device into its latest-state
hash, by sequence number (compare-and-set): a reading replaces the stored one
of its type only when its sequence number is higher, so late, out-of-order and
replayed entries never make the view go back in time.

KEYS[1]  the device's state hash                 iot:{<deviceId>}:state
ARGV[1]  arrival: stream-id milliseconds of the newest of these entries (when
         Redis received it; "last seen" is the highest arrival ever folded in)
ARGV[2..] readings, one value each: "<seq> <time> <type> <payload JSON>" (one
         argument per reading rather than four: fewer arguments to encode and
         parse per call; a type never contains a space)

Hash fields (decoded by shared/state.ts):
  seq      highest sequence number folded in
  time     device time of that reading
  seen     highest arrival time (ms)
  r:<type> "<seq> <time> <payload>" of the newest reading of that type

Result: { applied, stale }
  applied  readings stored (newer than what the hash held for their type)
  stale    readings ignored (same or older sequence number than the stored one)
]]

local key = KEYS[1]
local arrival = tonumber(ARGV[1])
local applied, stale = 0, 0

-- Parse the readings, then read every field they compare against in one HMGET.
local readings = {}
local fields = { 'seq', 'seen' }
local slot = {}
for i = 2, #ARGV do
  local seqText, timeText, readingType, payload = string.match(ARGV[i], '^(%d+) (%d+) (%S+) (.*)$')
  local field = 'r:' .. readingType
  readings[#readings + 1] = { tonumber(seqText), seqText, timeText, field, payload }
  if not slot[field] then
    fields[#fields + 1] = field
    slot[field] = #fields
  end
end
local stored = redis.call('HMGET', key, unpack(fields))
local topSeq = tonumber(stored[1]) or 0
local topTime = nil
local seen = tonumber(stored[2]) or 0

local updates = {}
local current = {}
for _, r in ipairs(readings) do
  local seq, field = r[1], r[4]
  local have = current[field]
  if have == nil then
    local raw = stored[slot[field]]
    have = raw and tonumber(string.match(raw, '^(%d+)')) or 0
  end
  if seq > have then
    current[field] = seq
    updates[field] = r[2] .. ' ' .. r[3] .. ' ' .. r[5]
    applied = applied + 1
    if seq > topSeq then
      topSeq = seq
      topTime = r[3]
    end
  else
    current[field] = have
    stale = stale + 1
  end
end

local args = {}
for field, value in pairs(updates) do
  args[#args + 1] = field
  args[#args + 1] = value
end
if topTime then
  args[#args + 1] = 'seq'
  args[#args + 1] = string.format('%.0f', topSeq)
  args[#args + 1] = 'time'
  args[#args + 1] = topTime
end
if arrival > seen then
  args[#args + 1] = 'seen'
  args[#args + 1] = string.format('%.0f', arrival)
end
if #args > 0 then redis.call('HSET', key, unpack(args)) end

return { applied, stale }
