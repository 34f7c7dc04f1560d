-- lib/foldState.lua (a fragment: scripts include it by name): folds readings of
-- many devices into their partition's latest-state hash by sequence number
-- (compare-and-set): a reading replaces the stored one of its type only when its
-- sequence number is higher, so late, out-of-order and replayed entries never make
-- the view go back in time. One HMGET (two with late readings) and one HSET per call, however many devices
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
-- { row, ... } }, each row as the append scripts' batch rows: { deviceId, seqText,
-- timeText, type, version, payload } (all text). Returns applied, stale.
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

-- Adds a batch row that XADD appended as `id` to its device's fold (the row itself:
-- no table of its own). The ids of one call only grow, so the last one is the
-- device's newest arrival.
local function foldAppended(fold, e, id)
  fold.readings[#fold.readings + 1] = e
  fold.lastId = id
end

-- Whether the space-separated list contains word (a type: no spaces in it).
local function listed(list, word)
  local from = 1
  while true do
    local a, b = string.find(list, word, from, true)
    if not a then return false end
    if (a == 1 or string.byte(list, a - 1) == 32) and (b == #list or string.byte(list, b + 1) == 32) then
      return true
    end
    from = b + 1
  end
end

local function foldState(key, folds)
  local applied, stale = 0, 0
  -- Each device's header first, in one read. A type's stored reading never has a
  -- higher sequence number than its device's header (both are written only here),
  -- so a reading above the header's number is newer than every stored one: the
  -- stored readings (their payloads) are read only for readings at or below it
  -- (late, replayed), in a second read that in-order traffic never needs.
  local devs = {}
  for i = 1, #folds do devs[i] = folds[i].dev end
  local heads = redis.call('HMGET', key, unpack(devs))
  local older, slot = {}, {}
  local tops, seqTexts, times, seens, typeTexts = {}, {}, {}, {}, {}
  for i = 1, #folds do
    local f = folds[i]
    local top, seqText, time, seen, typeText = 0, '0', '0', '0', ''
    local head = heads[i]
    if head then
      seqText, time, seen, typeText = string.match(head, '^(%d+) (%d+) (%d+) ?(.*)$')
      top = tonumber(seqText)
    end
    tops[i], seqTexts[i], times[i], seens[i], typeTexts[i] = top, seqText, time, seen, typeText
    -- The readings that will not be above the header when their turn comes (the
    -- header rises with each one applied before them).
    for j = 1, #f.readings do
      local seq = tonumber(f.readings[j][2])
      if seq > top then
        top = seq
      else
        local field = f.dev .. ' ' .. f.readings[j][4]
        if not slot[field] then
          older[#older + 1] = field
          slot[field] = #older
        end
      end
    end
  end
  local stored = #older > 0 and redis.call('HMGET', key, unpack(older)) or {}

  local args = {}
  for i = 1, #folds do
    local f = folds[i]
    local topSeq, topSeqText, topTime, seen, typeText = tops[i], seqTexts[i], times[i], seens[i], typeTexts[i]
    local changed = false
    -- Several readings of one device may share a type: the newest wins and is written once
    -- (updates). Nearly every fold has one reading, which needs neither table.
    local many = #f.readings > 1
    local current, updates
    if many then current, updates = {}, {} end
    for j = 1, #f.readings do
      local r = f.readings[j]
      local seq, ty = tonumber(r[2]), r[4]
      local field = f.dev .. ' ' .. ty
      local have = many and current[field] or nil
      if have == nil then
        if seq > topSeq then
          have = 0
        else
          local raw = stored[slot[field]]
          have = raw and tonumber(string.match(raw, '^(%d+)')) or 0
        end
      end
      if seq > have then
        local value = r[2] .. ' ' .. r[3] .. ' ' .. r[6]
        if many then
          current[field], updates[field] = seq, value
        else
          args[#args + 1] = field
          args[#args + 1] = value
        end
        applied = applied + 1
        if not listed(typeText, ty) then typeText = typeText == '' and ty or typeText .. ' ' .. ty end
        if seq > topSeq then
          topSeq, topSeqText, topTime = seq, r[2], r[3]
        end
        changed = true
      else
        if many then current[field] = have end
        stale = stale + 1
      end
    end
    if many then
      for field, value in pairs(updates) do
        args[#args + 1] = field
        args[#args + 1] = value
      end
    end
    local arrival = f.arrival or (f.lastId and string.match(f.lastId, '^(%d+)'))
    if arrival and laterText(arrival, seen) then
      seen = arrival
      changed = true
    end
    if changed then
      args[#args + 1] = f.dev
      args[#args + 1] = topSeqText .. ' ' .. topTime .. ' ' .. seen .. (typeText ~= '' and ' ' .. typeText or '')
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
  return applied, stale
end
