-- Reserve: ARGV = prefix, hold_id, amount, lease_ms, expired_ttl_ms, window_grace_ms, n,
-- then n x (budget, start_ms, end_ms, max). All-or-nothing across the n windows.
-- Replies: {'dup'} | {'load', index, generation, ...} | {'exceeded', index, spent, reserved} | {'ok'}
local hold_id = ARGV[2]
local amount = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local expired_ttl = tonumber(ARGV[5])
local grace = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local hkey = hold_key(hold_id)
if redis.call('EXISTS', hkey) == 1 then
  return { 'dup' }
end
local limits = {}
for i = 1, n do
  local base = 7 + (i - 1) * 4
  local budget = ARGV[base + 1]
  limits[i] = {
    budget = budget,
    key = window_key(budget, ARGV[base + 2]),
    finish = tonumber(ARGV[base + 3]),
    max = tonumber(ARGV[base + 4]),
  }
end
-- Never admit against a window whose committed spend is not loaded.
local missing = { 'load' }
for i, l in ipairs(limits) do
  if redis.call('HEXISTS', l.key, 'spent') == 0 then
    missing[#missing + 1] = i - 1
    missing[#missing + 1] = redis.call('GET', gen_key(l.budget)) or '0'
  end
end
if #missing > 1 then
  return missing
end
local now = now_ms()
for _, l in ipairs(limits) do
  sweep(l.key, now, expired_ttl)
end
for i, l in ipairs(limits) do
  local spent = tonumber(redis.call('HGET', l.key, 'spent'))
  local reserved = tonumber(redis.call('HGET', l.key, 'reserved') or '0')
  if spent + reserved + amount > l.max then
    return { 'exceeded', i - 1, spent, reserved }
  end
end
local deadline = now + lease
local member = hold_id .. '|' .. ARGV[3]
local keys = {}
for i, l in ipairs(limits) do
  redis.call('HINCRBY', l.key, 'reserved', ARGV[3])
  redis.call('ZADD', holds_key(l.key), int(deadline), member)
  local keep = math.max(l.finish, now) + grace
  keep_until(l.key, keep, now)
  keep_until(holds_key(l.key), keep, now)
  keys[i] = l.key
end
redis.call('HSET', hkey, 'state', 'active', 'amount', ARGV[3], 'deadline', int(deadline),
  'windows', table.concat(keys, ','), 'member', member)
redis.call('PEXPIRE', hkey, int(lease + expired_ttl))
return { 'ok' }
