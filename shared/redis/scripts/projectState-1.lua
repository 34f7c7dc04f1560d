--[[
projectState-1.lua: folds telemetry readings of one device into its latest state
(its partition's hash), by sequence number (compare-and-set): a reading replaces the stored one
of its type only when its sequence number is higher, so late, out-of-order and
replayed entries never make the view go back in time.

KEYS[1]  the partition's latest-state hash     iot:state:{p<N>}
ARGV[1]  the device id
ARGV[2]  arrival: stream-id milliseconds of the newest of these entries (when
         Redis received it; "last seen" is the highest arrival ever folded in)
ARGV[3..] readings, one value each: "<seq> <time> <type> <payload JSON>" (one
         argument per reading rather than four: fewer arguments to encode and
         parse per call; a type never contains a space)

The hash: see lib/foldState.lua (decoded by shared/state.ts). The append
scripts fold what they append the same way (appendTelemetry-n.lua); this script
is the read-back projection's (gateway/projection), for entries written without.

Result: { applied, stale }
  applied  readings stored (newer than what the hash held for their type)
  stale    readings ignored (same or older sequence number than the stored one)
]]

-- #include foldState

local readings = {}
for i = 3, #ARGV do
  local seqText, timeText, readingType, payload = string.match(ARGV[i], '^(%d+) (%d+) (%S+) (.*)$')
  readings[#readings + 1] = { ARGV[1], seqText, timeText, readingType, '', payload }
end
local applied, stale = foldState(KEYS[1], { { dev = ARGV[1], arrival = string.match(ARGV[2], '^%d+$'), readings = readings } })
return { applied, stale }
