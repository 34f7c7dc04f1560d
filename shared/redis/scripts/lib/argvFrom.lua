-- lib/argvFrom.lua (a fragment: scripts include it by name): ARGV[first .. last]
-- as a new array (last defaults to #ARGV), for the fields a script appends.
local function argvFrom(first, last)
  local out = {}
  for i = first, last or #ARGV do out[#out + 1] = ARGV[i] end
  return out
end
