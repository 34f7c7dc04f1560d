-- lib/isTerminal.lua (a fragment: scripts include it by name): whether a ledger
-- status ends a command. The same five statuses as TERMINAL_STATUSES in
-- shared/commands/codec.ts; a command has exactly one of them, once.
local function isTerminal(st)
  return st == 'succeeded' or st == 'failed' or st == 'rejected' or st == 'expired' or st == 'unknown'
end
