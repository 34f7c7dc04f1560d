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

local head = redis.call('HMGET', key, 'seq', 'seen')
local topSeq = tonumber(head[1]) or 0
local topTime = nil
local seen = tonumber(head[2]) or 0

local updates = {}
local current = {}
for i = 2, #ARGV do
  local seqText, timeText, readingType, payload = string.match(ARGV[i], '^(%d+) (%d+) (%S+) (.*)$')
  local seq = tonumber(seqText)
  local field = 'r:' .. readingType
  local stored = current[field]
  if stored == nil then
    local raw = redis.call('HGET', key, field)
    stored = raw and tonumber(string.match(raw, '^(%d+)')) or 0
  end
  if seq > stored then
    current[field] = seq
    updates[field] = seqText .. ' ' .. timeText .. ' ' .. payload
    applied = applied + 1
    if seq > topSeq then
      topSeq = seq
      topTime = timeText
    end
  else
    current[field] = stored
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
