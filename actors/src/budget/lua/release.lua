-- Release: ARGV = prefix, hold_id, finished_ttl_ms.
-- Replies: 'released' | 'released_after_expiry' | 'finished' (no-op) | 'unknown' (no-op)
local hkey = hold_key(ARGV[2])
local h = redis.call('HMGET', hkey, 'state', 'windows', 'member')
local state = h[1]
if not state then
  return 'unknown'
end
if state ~= 'active' and state ~= 'expired' then
  return 'finished'
end
if state == 'active' then
  for _, w in ipairs(split(h[2])) do
    unreserve(w, h[3])
  end
end
redis.call('DEL', hkey)
redis.call('HSET', hkey, 'state', 'released')
redis.call('PEXPIRE', hkey, ARGV[3])
if state == 'active' then
  return 'released'
end
return 'released_after_expiry'
