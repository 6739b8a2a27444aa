-- Removes the expired entries among some index entries of one user.
-- KEYS: user index. ARGV: now ms, then session ids.
-- Returns one result per id: -1 no entry, 0 removed (expired), or the entry's later expiry as
-- a string (the session was extended: requeue it then).
local now = tonumber(ARGV[1])
local results = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not score then
    results[#results + 1] = -1
  elseif tonumber(score) <= now then
    redis.call('ZREM', KEYS[1], ARGV[i])
    results[#results + 1] = 0
  else
    results[#results + 1] = score
  end
end
return results
