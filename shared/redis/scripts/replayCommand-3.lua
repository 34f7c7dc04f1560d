--[[
replayCommand-3.lua: queue the replay of a dead-lettered command, once per
dead letter, and record that it was replayed, in one step.

The replay's ledger alone cannot make a replay happen once: it expires a day
after the replay's deadline, while dead letters are kept for weeks, so a
`ctl dlq replay all` run later would queue every one again. The replay record
(KEYS[3]) is kept as long as dead letters are, and is written together with
the entry and the ledger: there is no moment at which a replay is queued but
not yet recorded. All three keys share the device's hash tag (one slot).

KEYS[1]  the device's command stream     iot:{dev}:commands
KEYS[2]  the replay's ledger             iot:{dev}:cmd:<replayId>
KEYS[3]  the replay record               iot:{dev}:replay:<deadLetterId>  (hash: c replay id, e entry id, t time)
ARGV[1]  ledger expiry, absolute ms (deadline + retention)
ARGV[2]  now (ms): the queued time and the replay's time
ARGV[3]  replay record expiry, absolute ms
ARGV[4]  the replay's command id
ARGV[5..] the replay's stream fields

Result: { code, replayId, entryId, replayedAt }
  code 1  queued now
  code 0  already replayed: the record says when, under which id and entry
          (a replay queued before records existed, found by its ledger, gets
          its record now)
]]

-- #include argvFrom

local record = redis.call('HMGET', KEYS[3], 'c', 'e', 't')
if record[1] then return { 0, record[1], record[2] or '', record[3] or '' } end
local st = redis.call('HGET', KEYS[2], 'st')
if st then
  local old = redis.call('HMGET', KEYS[2], 'e', 'tq')
  redis.call('HSET', KEYS[3], 'c', ARGV[4], 'e', old[1] or '', 't', old[2] or ARGV[2])
  redis.call('PEXPIREAT', KEYS[3], ARGV[3])
  return { 0, ARGV[4], old[1] or '', old[2] or ARGV[2] }
end
local id = redis.call('XADD', KEYS[1], '*', unpack(argvFrom(5)))
redis.call('HSET', KEYS[2], 'st', 'queued', 'tq', ARGV[2], 'e', id)
redis.call('PEXPIREAT', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'c', ARGV[4], 'e', id, 't', ARGV[2])
redis.call('PEXPIREAT', KEYS[3], ARGV[3])
return { 1, ARGV[4], id, ARGV[2] }
