-- Shared by every budget script (prepended to each). Money is integer units of 1e-10 USD;
-- Lua numbers are doubles, exact up to 2^53, and every number handed back to Redis goes
-- through int() so it is written in full (tostring would print 14 significant digits).
--
-- Keys, all under the prefix ARGV[1]:
--   <P>w:<budget>:<start_ms>        hash  spent (absent until loaded), reserved
--   <P>w:<budget>:<start_ms>:holds  zset  member "<hold_id>|<amount>", score lease deadline (ms)
--   <P>h:<hold_id>                  hash  state (active|expired|settled|released), amount,
--                                         deadline, windows (comma-joined window keys), member
--   <P>g:<budget>                   string generation, bumped by each invalidation
--   <P>b:<budget>                   set   the budget's window keys (for invalidation)
-- Invariant: a window's `reserved` is the sum of the amounts of the members of its zset.
local P = ARGV[1]

local function int(x)
  return string.format('%d', x)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function window_key(budget, start_ms)
  return P .. 'w:' .. budget .. ':' .. start_ms
end

local function holds_key(wkey)
  return wkey .. ':holds'
end

local function hold_key(hold_id)
  return P .. 'h:' .. hold_id
end

local function gen_key(budget)
  return P .. 'g:' .. budget
end

local function budget_windows_key(budget)
  return P .. 'b:' .. budget
end

local function split(list)
  local out = {}
  if list then
    for w in string.gmatch(list, '[^,]+') do
      out[#out + 1] = w
    end
  end
  return out
end

-- Take a hold out of one window: its amount leaves `reserved` only if it was counted there.
local function unreserve(wkey, member)
  -- The EXISTS guard keeps HINCRBY from creating a window (without a TTL) that expired.
  if redis.call('ZREM', holds_key(wkey), member) == 1 and redis.call('EXISTS', wkey) == 1 then
    local amount = string.sub(member, string.find(member, '|', 1, true) + 1)
    redis.call('HINCRBY', wkey, 'reserved', '-' .. amount)
  end
end

-- Expire every hold of window `wkey` whose lease ended: out of `reserved` in every window
-- it was made in, and marked expired (kept `expired_ttl` ms so a late settle still counts).
local function sweep(wkey, now, expired_ttl)
  local due = redis.call('ZRANGEBYSCORE', holds_key(wkey), '-inf', int(now))
  for _, member in ipairs(due) do
    local hold_id = string.sub(member, 1, string.find(member, '|', 1, true) - 1)
    local hkey = hold_key(hold_id)
    local h = redis.call('HMGET', hkey, 'state', 'windows')
    local windows = split(h[2])
    if #windows == 0 then
      -- The hold's record is gone (its key outlived): the member carries the amount.
      windows = { wkey }
    end
    for _, w in ipairs(windows) do
      unreserve(w, member)
    end
    if h[1] == 'active' then
      redis.call('HSET', hkey, 'state', 'expired')
      redis.call('PEXPIRE', hkey, int(expired_ttl))
    end
  end
end

-- Keep `key` (if it exists) until at least `at_ms`; never shortens its life.
local function keep_until(key, at_ms, now)
  local ttl = redis.call('PTTL', key)
  if ttl == -2 or (ttl >= 0 and now + ttl >= at_ms) then
    return
  end
  redis.call('PEXPIREAT', key, int(at_ms))
end
