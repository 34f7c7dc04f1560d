--[[
trimStream-1.lua: one lag-aware retention step on one stream, atomically.

Reading the consumer groups' positions and trimming happen in one script, so
no consumer can move and no other trimmer can act between the two: several
gateways may run this on the same stream at the same time and none of them
ever removes an entry that a group still needs (the soft policies), and every
entry removed by the hard cap is counted exactly once, by the call that
removed it.

What a group still needs (its "floor"): every entry it has not yet been
delivered (ids above XINFO GROUPS last-delivered-id) and every entry delivered
but not acknowledged (ids at or above the smallest id of XPENDING's summary).
The soft policies (maximum age, maximum length) never trim at or above the
lowest floor of all groups. The hard memory cap does, and then reports per
group how many of the removed entries that group had not processed.

KEYS[1]  the stream
ARGV[1]  maxAgeMs: remove entries older than this (0 = no age limit)
ARGV[2]  maxLen: keep at most this many entries (0 = no length limit)
ARGV[3]  maxBytes: hard memory cap, by MEMORY USAGE (0 = no cap)
ARGV[4]  capTargetBytes: when over the cap, trim down to about this many bytes
ARGV[5]  maxRemove: most entries the length policy and the cap remove in one call
         (bounds the script's run time; the result says when more is due)
ARGV[6]  nowMs: the time the age policy measures from (0 = the server's TIME)
ARGV[7]  memory samples for MEMORY USAGE (0 = exact, slow on big streams)
ARGV[8]  holdUngrouped: 1 = a stream with no consumer group at all is held
         back whole by the soft policies (nobody has read any of its entries
         yet: a device's command stream before its agent or gateway made the
         group); only the hard cap trims it. Absent or 0 = no group, no floor.

Result: { lenBefore, removedAge, removedLen, removedCap, lenAfter, memAfter,
          more, blockedBy, nowMs, groupCount,
          then per group: name, lost, pending, lag (-1 = unknown),
                          lastDeliveredId, oldestPendingId ('' = none), consumers }
  blockedBy: name of the group whose floor held back a soft policy ('' = none;
             '*' = no group at all, with holdUngrouped)
  more: 1 when the length policy or the cap still has entries to remove
]]

local key = KEYS[1]
local maxAge = tonumber(ARGV[1])
local maxLen = tonumber(ARGV[2])
local maxBytes = tonumber(ARGV[3])
local capTarget = tonumber(ARGV[4])
local maxRemove = tonumber(ARGV[5])
local now = tonumber(ARGV[6])
local samples = ARGV[7]
local holdUngrouped = ARGV[8] == '1'

if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

if redis.call('EXISTS', key) == 0 then
  return { 0, 0, 0, 0, 0, 0, 0, '', now, 0 }
end

-- Stream ids are "<ms>-<seq>"; both parts fit a Lua double for any real stream.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return { tonumber(ms), tonumber(seq) }
end
local function less(a, b)
  return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end
local function fmt(id)
  return string.format('%.0f-%.0f', id[1], id[2])
end

-- The groups and the lowest floor among them.
local groups = {}
local floor, floorGroup = nil, ''
local raw = redis.call('XINFO', 'GROUPS', key)
for i = 1, #raw do
  local g = raw[i]
  local info = {}
  for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
  local last = parse(info['last-delivered-id'])
  local group = {
    name = info['name'],
    pending = tonumber(info['pending']),
    consumers = tonumber(info['consumers']),
    lag = info['lag'] and tonumber(info['lag']) or -1,
    lastDelivered = info['last-delivered-id'],
    last = last,
    oldest = '',
    lost = 0,
  }
  -- The first id not yet delivered is the one right after last-delivered-id.
  local need = { last[1], last[2] + 1 }
  if group.pending > 0 then
    local summary = redis.call('XPENDING', key, group.name)
    if summary[2] then
      group.oldest = summary[2]
      local oldest = parse(summary[2])
      if less(oldest, need) then need = oldest end
    end
  end
  group.need = need
  if floor == nil or less(need, floor) then
    floor = need
    floorGroup = group.name
  end
  groups[#groups + 1] = group
end

local lenBefore = redis.call('XLEN', key)
local removedAge, removedLen, removedCap = 0, 0, 0
local blockedBy = ''
local more = 0

-- No group yet and asked to hold: every entry is unread, so the soft policies stop at the head.
if holdUngrouped and #groups == 0 and lenBefore > 0 then
  local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  floor, floorGroup = parse(head[1][1]), '*'
end

-- Soft policy 1: maximum age, by minimum id, never past the floor.
if maxAge > 0 then
  local cut = { now - maxAge, 0 }
  if floor and less(floor, cut) then
    -- Held back only if some entry the policy would remove is still needed.
    if #redis.call('XRANGE', key, fmt(floor), '(' .. fmt(cut), 'COUNT', 1) > 0 then blockedBy = floorGroup end
    cut = floor
  end
  removedAge = redis.call('XTRIM', key, 'MINID', fmt(cut))
end

-- Soft policy 2: maximum length, never past the floor.
if maxLen > 0 then
  local len = redis.call('XLEN', key)
  if len > maxLen then
    local excess = math.min(len - maxLen, maxRemove)
    if excess < len - maxLen then more = 1 end
    -- How many entries lie below each group's floor. Cheap from XINFO's lag
    -- (entries after last-delivered-id) when Redis knows it: entries at or
    -- below last-delivered-id = len - lag, less the few from the oldest
    -- pending id on (a consumer's in-flight window). Otherwise, or when that
    -- window is large, count from the head (at most `excess` entries read).
    for _, group in ipairs(groups) do
      local below = nil
      if group.lag >= 0 then
        local delivered = len - group.lag
        if group.pending == 0 then
          below = delivered
        else
          local window = #redis.call('XRANGE', key, group.oldest, group.lastDelivered, 'COUNT', 101)
          if window <= 100 then below = delivered - window end
        end
      end
      if below == nil then
        below = #redis.call('XRANGE', key, '-', '(' .. fmt(group.need), 'COUNT', excess)
      end
      if below < excess then
        excess = math.max(below, 0)
        blockedBy = group.name
        more = 0
      end
    end
    if floorGroup == '*' then
      excess = 0
      blockedBy = '*'
      more = 0
    end
    if excess > 0 then removedLen = redis.call('XTRIM', key, 'MAXLEN', len - excess) end
  end
end

-- Hard cap: trims whatever it must, and counts what each group loses.
if maxBytes > 0 then
  local mem = redis.call('MEMORY', 'USAGE', key, 'SAMPLES', samples) or 0
  local len = redis.call('XLEN', key)
  if mem > maxBytes and len > 0 then
    local keep = math.floor(len * capTarget / mem)
    local remove = math.max(1, math.min(len - keep, maxRemove))
    if remove < len - keep then more = 1 end
    local removed = redis.call('XRANGE', key, '-', '+', 'COUNT', remove)
    local ids = {}
    for i = 1, #removed do ids[removed[i][1]] = true end
    local firstId, lastId = removed[1][1], removed[#removed][1]
    for _, group in ipairs(groups) do
      -- Not yet delivered: removed ids above last-delivered-id (ids are sorted).
      local lost = 0
      for i = #removed, 1, -1 do
        if less(group.last, parse(removed[i][1])) then lost = lost + 1 else break end
      end
      -- Delivered but not acknowledged: pending ids among the removed ones.
      if group.pending > 0 then
        local pending = redis.call('XPENDING', key, group.name, firstId, lastId, remove)
        for i = 1, #pending do
          if ids[pending[i][1]] then lost = lost + 1 end
        end
      end
      group.lost = lost
    end
    removedCap = redis.call('XTRIM', key, 'MAXLEN', len - remove)
  end
end

local lenAfter = redis.call('XLEN', key)
local memAfter = redis.call('MEMORY', 'USAGE', key, 'SAMPLES', samples) or 0
-- Memory does not fall in proportion to the entries removed (consumer groups'
-- pending lists stay, a partly trimmed node keeps its size): measure again
-- and ask for another call while still over the cap.
if removedCap > 0 and lenAfter > 0 and memAfter > maxBytes then more = 1 end
local result = { lenBefore, removedAge, removedLen, removedCap, lenAfter, memAfter, more, blockedBy, now, #groups }
for _, group in ipairs(groups) do
  -- The oldest pending entry may be gone after a forced trim; report what XPENDING said before.
  result[#result + 1] = group.name
  result[#result + 1] = group.lost
  result[#result + 1] = group.pending
  result[#result + 1] = group.lag
  result[#result + 1] = group.lastDelivered
  result[#result + 1] = group.oldest
  result[#result + 1] = group.consumers
end
return result
