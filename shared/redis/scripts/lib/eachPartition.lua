-- lib/eachPartition.lua (a fragment: scripts include it by name): the partitions of
-- an append call. ARGV[1] is the script's own; ARGV[1+i] is partition i's batch, and
-- its keys are the i-th k of KEYS, k being the number of keys over the partitions.
-- Calls fn(batchJson, key1, ..., keyK) for each partition in order.
local function eachPartition(fn)
  local partitions = #ARGV - 1
  local k = #KEYS / partitions
  for i = 1, partitions do
    fn(ARGV[1 + i], unpack(KEYS, k * (i - 1) + 1, k * i))
  end
end
