-- Shared by every narvik script (prepended at compile time). Keys arrive in KEYS only; user
-- ids, session ids and data arrive in ARGV only, so no input is ever part of the source.

-- Record layout (see src/record.rs): "n1", 16 hex expiry ms, 16 hex creation ms,
-- 8 hex user id length, user id, data JSON.
local HEADER_LEN = 42

-- The user id stored in a record, or false when the key is missing or not a narvik record.
local function owner(key)
  local head = redis.call('GETRANGE', key, 0, HEADER_LEN - 1)
  if string.len(head) < HEADER_LEN or string.sub(head, 1, 2) ~= 'n1' then
    return false
  end
  local length = tonumber(string.sub(head, 35, 42), 16)
  if not length then
    return false
  end
  return redis.call('GETRANGE', key, HEADER_LEN, HEADER_LEN + length - 1)
end

-- Keeps a key alive at least until `ms` (never shortens its life). A fresh key has no TTL
-- (PEXPIRETIME -1), so PEXPIREAT GT alone would not set it.
local function keep_until(key, ms)
  if redis.call('PEXPIRETIME', key) < tonumber(ms) then
    redis.call('PEXPIREAT', key, ms)
  end
end

-- Adds `member` to a sorted set scored by expiry, dropping entries that expired at or before
-- `prune_before` (empty: no pruning), and keeps the set alive until `alive_until` ms. Returns 1
-- when the member is new. GT: an existing entry is only ever moved later, so an index entry
-- never dies before its record.
local function track(zset, score, member, prune_before, alive_until)
  if prune_before ~= '' then
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', prune_before)
  end
  local added = redis.call('ZADD', zset, 'GT', score, member)
  keep_until(zset, alive_until)
  return added
end

-- Moves the expiry of an existing record of `user`: header field and key TTL together.
-- 1 done, 0 no such record (nothing is created), -1 the record belongs to another user.
local function retime_record(key, ms, ms_hex, user)
  local stored = owner(key)
  if not stored then
    return 0
  end
  if stored ~= user then
    return -1
  end
  redis.call('SETRANGE', key, 2, ms_hex)
  redis.call('PEXPIREAT', key, ms)
  return 1
end

-- Moves an existing index entry (XX: never adds one) and keeps the index alive that long.
local function retime_index(index, ms, session_id)
  redis.call('ZADD', index, 'XX', ms, session_id)
  if redis.call('EXISTS', index) == 1 then
    keep_until(index, ms)
  end
end
