-- State: ARGV = prefix, budget, start_ms, expired_ttl_ms.
-- Replies: {'load', generation} | {'ok', spent, reserved}
local wkey = window_key(ARGV[2], ARGV[3])
if redis.call('HEXISTS', wkey, 'spent') == 0 then
  return { 'load', redis.call('GET', gen_key(ARGV[2])) or '0' }
end
sweep(wkey, now_ms(), tonumber(ARGV[4]))
local r = redis.call('HMGET', wkey, 'spent', 'reserved')
return { 'ok', tonumber(r[1]), tonumber(r[2] or '0') }
