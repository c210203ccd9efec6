-- Seed a window's committed spend if absent (never overwrites) and only if the budget was
-- not invalidated since the load was asked for.
-- ARGV = prefix, budget, start_ms, end_ms, spent, generation, window_grace_ms.
-- Replies: 'applied' | 'present' | 'stale'
local budget = ARGV[2]
if (redis.call('GET', gen_key(budget)) or '0') ~= ARGV[6] then
  return 'stale'
end
local wkey = window_key(budget, ARGV[3])
local applied = redis.call('HSETNX', wkey, 'spent', ARGV[5])
redis.call('HSETNX', wkey, 'reserved', '0')
local now = now_ms()
local keep = math.max(tonumber(ARGV[4]), now) + tonumber(ARGV[7])
keep_until(wkey, keep, now)
local bkey = budget_windows_key(budget)
redis.call('SADD', bkey, wkey)
keep_until(bkey, keep, now)
if applied == 1 then
  return 'applied'
end
return 'present'
