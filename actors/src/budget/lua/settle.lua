-- Settle: ARGV = prefix, hold_id, actual, finished_ttl_ms.
-- Replies: 'settled' | 'settled_after_expiry' | 'finished' (no-op) | 'unknown' (no-op)
local hkey = hold_key(ARGV[2])
local h = redis.call('HMGET', hkey, 'state', 'windows', 'member')
local state = h[1]
if not state then
  return 'unknown'
end
if state ~= 'active' and state ~= 'expired' then
  return 'finished'
end
for _, w in ipairs(split(h[2])) do
  if state == 'active' then
    unreserve(w, h[3])
  end
  -- No baseline means the window's state was lost or invalidated: its reload reads the
  -- database, which records this usage, so adding here would count it twice.
  if redis.call('HEXISTS', w, 'spent') == 1 then
    redis.call('HINCRBY', w, 'spent', ARGV[3])
  end
end
redis.call('DEL', hkey)
redis.call('HSET', hkey, 'state', 'settled')
redis.call('PEXPIRE', hkey, ARGV[4])
if state == 'active' then
  return 'settled'
end
return 'settled_after_expiry'
