-- lib/foldState.lua (a fragment: scripts include it by name): folds readings of
-- one device into its latest-state hash by sequence number (compare-and-set): a
-- reading replaces the stored one of its type only when its sequence number is
-- higher, so late, out-of-order and replayed entries never make the view go back
-- in time. Hash fields (decoded by shared/state.ts):
--   seq      highest sequence number folded in
--   time     device time of that reading
--   seen     highest arrival time (ms, from the stream id: when Redis received it)
--   r:<type> "<seq> <time> <payload>" of the newest reading of that type
-- readings: array of { seq (number), seqText, timeText, type, payload }.
-- Returns applied, stale.
local function foldState(key, arrival, readings)
  local applied, stale = 0, 0
  -- Read every field the readings compare against in one HMGET.
  local fields = { 'seq', 'seen' }
  local slot = {}
  for i = 1, #readings do
    local field = 'r:' .. readings[i][4]
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
  for i = 1, #readings do
    local r = readings[i]
    local seq, field = r[1], 'r:' .. r[4]
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
  return applied, stale
end
