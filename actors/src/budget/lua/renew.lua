-- Renew: ARGV = prefix, hold_id, lease_ms, expired_ttl_ms. The deadline only moves later.
-- Replies: 'ok' | 'not_active'
local hkey = hold_key(ARGV[2])
local h = redis.call('HMGET', hkey, 'state', 'windows', 'member', 'deadline')
if h[1] ~= 'active' then
  return 'not_active'
end
local now = now_ms()
-- Past its deadline the hold is expired, swept or not (the next sweep reclaims it).
if tonumber(h[4]) <= now then
  return 'not_active'
end
local deadline = math.max(tonumber(h[4]), now + tonumber(ARGV[3]))
for _, w in ipairs(split(h[2])) do
  redis.call('ZADD', holds_key(w), 'XX', int(deadline), h[3])
end
redis.call('HSET', hkey, 'deadline', int(deadline))
redis.call('PEXPIRE', hkey, int(deadline - now + tonumber(ARGV[4])))
return 'ok'
