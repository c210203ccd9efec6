-- Invalidate: ARGV = prefix, budget, generation_ttl_ms. Drops the committed spend of every
-- window of the budget (live holds keep counting in `reserved`) and bumps its generation
-- so that a load started before now is not seeded.
local budget = ARGV[2]
local gkey = gen_key(budget)
redis.call('INCR', gkey)
redis.call('PEXPIRE', gkey, ARGV[3])
for _, w in ipairs(redis.call('SMEMBERS', budget_windows_key(budget))) do
  redis.call('HDEL', w, 'spent')
end
return 'ok'
