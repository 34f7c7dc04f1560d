--[[
appendTelemetry-n.lua: idempotent, batched append of telemetry entries, and
the fold of what it appends into each device's latest-state hash.

A (device, sequence number) pair is appended at most once, whatever order the
numbers arrive in: a retried batch, a replayed disk journal or a duplicate
publish is refused entry by entry, while the rest of the batch goes in.

One call carries the batches of one or more partitions (a standalone server
takes a producer's whole batch in one call; a Cluster one partition per call,
since a script's keys must share a slot). For partition i of P:

KEYS[k*(i-1)+1]  telemetry partition stream          iot:telemetry:{pN}
KEYS[k*(i-1)+2]  sequence state of that partition     iot:telemetry:{pN}:seq (hash, field = device id)
KEYS[k*(i-1)+3]  the partition's latest-state hash     iot:state:{pN} (only when k = 3: without
                 it no state is kept, producer.foldState=false). Each appended entry is
                 folded into it by sequence number (lib/foldState.lua), in the same
                 call: the view is never behind the stream and needs no read-back.
                 Duplicates are not folded.
                 k, the keys per partition (2 or 3), is the number of keys over P.
ARGV[1]    maxGaps: ranges kept per device above its contiguous mark (the documented bound)
ARGV[1+i]  partition i's batch as a JSON array of entries, each one the array
           (deviceId, seq, time, type, version, payload), every value a string
           (numbers as decimal strings, so large ones never turn into exponents)
           No nested double brackets in this comment: Valkey's Lua refuses them.

State per device (one hash field): "<mark>" or "<mark>;<a>-<b>;<c>-<d>..."
  mark  every seq <= mark was appended (contiguous high-water mark)
  a-b   sorted, disjoint, non-adjacent ranges above mark+1 that were appended
When a device has more than maxGaps ranges, the lowest gap is closed: its
numbers are from then on refused as duplicates, and counted as "forgotten".

Result: { appended, duplicates, forgotten }, summed over the partitions
]]

-- #include foldState
-- #include eachPartition

local maxGaps = tonumber(ARGV[1])
local devices = {}
local appended, duplicates, forgotten = 0, 0, 0

-- markText: the mark as the text it was read or appended as, while it is that
-- number (the common state, no gaps, is then written back without string.format).
local function parse(raw)
  local st = { mark = 0, markText = '0', ranges = {}, dirty = false }
  if raw and not string.find(raw, ';', 1, true) then
    st.mark, st.markText = tonumber(raw), raw
  elseif raw then
    local first = true
    for part in string.gmatch(raw, '[^;]+') do
      if first then
        st.mark, st.markText = tonumber(part), part
        first = false
      else
        local a, b = string.match(part, '^(%d+)-(%d+)$')
        st.ranges[#st.ranges + 1] = { tonumber(a), tonumber(b) }
      end
    end
  end
  return st
end

local function seen(st, seq)
  if seq <= st.mark then return true end
  local ranges = st.ranges
  for i = 1, #ranges do
    local r = ranges[i]
    if seq < r[1] then return false end
    if seq <= r[2] then return true end
  end
  return false
end

local function mark(st, seq, seqText)
  st.dirty = true
  local ranges = st.ranges
  if seq == st.mark + 1 then
    st.mark, st.markText = seq, seqText
    local r = ranges[1]
    if r and r[1] == seq + 1 then
      st.mark, st.markText = r[2], nil
      table.remove(ranges, 1)
    end
    return
  end
  local i = 1
  while ranges[i] and ranges[i][2] < seq do i = i + 1 end
  local before, after = ranges[i - 1], ranges[i]
  local joinsBefore = before and before[2] == seq - 1
  local joinsAfter = after and after[1] == seq + 1
  if joinsBefore and joinsAfter then
    before[2] = after[2]
    table.remove(ranges, i)
  elseif joinsBefore then
    before[2] = seq
  elseif joinsAfter then
    after[1] = seq
  else
    table.insert(ranges, i, { seq, seq })
  end
  if #ranges > maxGaps then
    local lowest = table.remove(ranges, 1)
    forgotten = forgotten + (lowest[1] - st.mark - 1)
    st.mark, st.markText = lowest[2], nil
  end
end

local function encode(st)
  if #st.ranges == 0 and st.markText then return st.markText end
  local parts = { st.markText or string.format('%.0f', st.mark) }
  for i = 1, #st.ranges do
    parts[#parts + 1] = string.format('%.0f-%.0f', st.ranges[i][1], st.ranges[i][2])
  end
  return table.concat(parts, ';')
end

-- Appends one partition's batch (and folds it when stateKey is given).
local function appendPartition(batchJson, stream, seqKey, stateKey)
  -- One JSON argument instead of 6 per entry: decoding it in C costs Redis less than
  -- 600 separate arguments, and the client builds one string instead of 600.
  local batch = cjson.decode(batchJson)

  -- The sequence state of every device in the batch in one HMGET (each redis.call
  -- costs more than the Lua around it).
  local folds, foldOf = foldsOf(batch)
  local order = {}
  for i = 1, #folds do order[i] = folds[i].dev end
  local raws = redis.call('HMGET', seqKey, unpack(order))
  for i = 1, #order do devices[order[i]] = parse(raws[i]) end

  for i = 1, #batch do
    local e = batch[i]
    local dev = e[1]
    local seq = tonumber(e[2])
    local st = devices[dev]
    if seen(st, seq) then
      duplicates = duplicates + 1
    else
      local id = redis.call('XADD', stream, '*', 'd', dev, 's', e[2], 't', e[3], 'k', e[4], 'v', e[5], 'p', e[6])
      mark(st, seq, e[2])
      appended = appended + 1
      if stateKey then foldAppended(foldOf[dev], e, id) end
    end
  end

  local dirty = {}
  for i = 1, #order do
    local st = devices[order[i]]
    if st.dirty then
      dirty[#dirty + 1] = order[i]
      dirty[#dirty + 1] = encode(st)
    end
  end
  if #dirty > 0 then redis.call('HSET', seqKey, unpack(dirty)) end
  if stateKey then
    local folded = {}
    for i = 1, #folds do
      if #folds[i].readings > 0 then folded[#folded + 1] = folds[i] end
    end
    if #folded > 0 then foldState(stateKey, folded) end
  end
end

eachPartition(appendPartition)

return { appended, duplicates, forgotten }
