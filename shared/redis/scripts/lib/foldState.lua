-- lib/foldState.lua (a fragment: scripts include it by name): folds readings of
-- many devices into their partition's latest-state hash by sequence number
-- (compare-and-set): a reading replaces the stored one of its type only when its
-- sequence number is higher, so late, out-of-order and replayed entries never make
-- the view go back in time. One HMGET and one HSET per call, however many devices
-- (up to the largest batch, 10,000: latest-state.test.ts): each redis.call costs more than the Lua around it.
--
-- The hash (iot:state:{p<N>}, decoded by shared/state.ts); a space is in no device
-- id and no type, so it separates them:
--   "<deviceId>"         "<seq> <time> <seen> <type> <type> ...": the highest
--                        sequence number folded in, the device time of that reading,
--                        the highest arrival (ms, from the stream id: when Redis
--                        received it), and the types that have a reading
--   "<deviceId> <type>"  "<seq> <time> <payload>": the newest reading of that type
--
-- folds: array of { dev = <id>, arrival = <ms as decimal text, or nil>, readings =
-- { { seq (number), seqText, timeText, type, payload }, ... } }. Returns applied, stale.
--
-- Times and arrivals stay text, and the header is written from the texts it was
-- read from or given: turning 13-digit numbers into Lua numbers and back
-- (tonumber, string.format) was about a tenth of Redis's CPU on the fleet benchmark.

-- True when the decimal text a is a larger number than b (both digits only, no
-- leading zeros: stream-id milliseconds, or what this fragment wrote).
local function laterText(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

-- The folds of a batch (JSON rows: deviceId, seq, time, type, version, payload),
-- one per device in the order each first appears, and the same folds by device.
local function foldsOf(batch)
  local folds, foldOf = {}, {}
  for i = 1, #batch do
    local dev = batch[i][1]
    if not foldOf[dev] then
      local fold = { dev = dev, readings = {} }
      folds[#folds + 1] = fold
      foldOf[dev] = fold
    end
  end
  return folds, foldOf
end

-- Adds a batch row that XADD appended as `id` to its device's fold; seq is e[2] as a number.
-- The ids of one call only grow, so the last one is the device's newest arrival.
local function foldAppended(fold, e, id, seq)
  fold.readings[#fold.readings + 1] = { seq, e[2], e[3], e[4], e[6] }
  fold.lastId = id
end

local function foldState(key, folds)
  local applied, stale = 0, 0
  -- Every field the readings compare against, in one read: each device's header
  -- and its (device, type) fields.
  local fields, slot = {}, {}
  local function want(field)
    if not slot[field] then
      fields[#fields + 1] = field
      slot[field] = #fields
    end
  end
  for i = 1, #folds do
    local f = folds[i]
    want(f.dev)
    for j = 1, #f.readings do want(f.dev .. ' ' .. f.readings[j][4]) end
  end
  local stored = redis.call('HMGET', key, unpack(fields))

  local args = {}
  for i = 1, #folds do
    local f = folds[i]
    local head = stored[slot[f.dev]]
    local topSeq, topSeqText, topTime, seen, types = 0, '0', '0', '0', {}
    local typeList = {}
    if head then
      local s, t, a, rest = string.match(head, '^(%d+) (%d+) (%d+) ?(.*)$')
      topSeq, topSeqText, topTime, seen = tonumber(s), s, t, a
      for ty in string.gmatch(rest, '%S+') do
        types[ty] = true
        typeList[#typeList + 1] = ty
      end
    end
    local current, updates, changed = {}, {}, false
    for j = 1, #f.readings do
      local r = f.readings[j]
      local seq, ty = r[1], r[4]
      local field = f.dev .. ' ' .. ty
      local have = current[field]
      if have == nil then
        local raw = stored[slot[field]]
        have = raw and tonumber(string.match(raw, '^(%d+)')) or 0
      end
      if seq > have then
        current[field] = seq
        updates[field] = r[2] .. ' ' .. r[3] .. ' ' .. r[5]
        applied = applied + 1
        if not types[ty] then
          types[ty] = true
          typeList[#typeList + 1] = ty
        end
        if seq > topSeq then
          topSeq, topSeqText, topTime = seq, r[2], r[3]
        end
        changed = true
      else
        current[field] = have
        stale = stale + 1
      end
    end
    for field, value in pairs(updates) do
      args[#args + 1] = field
      args[#args + 1] = value
    end
    local arrival = f.arrival or (f.lastId and string.match(f.lastId, '^(%d+)'))
    if arrival and laterText(arrival, seen) then
      seen = arrival
      changed = true
    end
    if changed then
      args[#args + 1] = f.dev
      args[#args + 1] = topSeqText .. ' ' .. topTime .. ' ' .. seen
        .. (#typeList > 0 and ' ' .. table.concat(typeList, ' ') or '')
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
  return applied, stale
end
