-- Single node: deletes a record and its index entry, atomic.
-- KEYS: record, user index. ARGV: session id, user id.
-- Returns 1 deleted, 0 no record, -1 the record has another user (nothing changed).
local stored = owner(KEYS[1])
if not stored then
  -- Missing, or not a narvik record: remove whatever is there; no index entry is known.
  redis.call('DEL', KEYS[1])
  return 0
end
if stored ~= ARGV[2] then
  return -1
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
