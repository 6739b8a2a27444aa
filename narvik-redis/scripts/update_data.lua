-- Single node and cluster (one key): replaces the data of a record still at the expected data
-- version, of this user and live at the engine's `now`, and bumps the version. Read and write
-- are one atomic step, and `KEEPTTL` keeps the key's TTL: an extension (SETRANGE of the expiry
-- and PEXPIREAT) before or after it keeps its effect, and a missing key is never created.
-- An "n1" record is rewritten as "n2" (its lifetime none, version 0 before the update).
-- KEYS: record. ARGV: expected data version (16 hex), now ms (the engine's), user id,
-- new data version (16 hex), data JSON.
-- Returns 1 replaced, 0 nothing changed.
local len, length, expires, head = head_of(KEYS[1])
if not len then
  return 0
end
local lifetime = '0000000000000000'
local version = '0000000000000000'
if len == HEADER_LEN then
  lifetime = string.sub(head, 43, 58)
  version = string.sub(head, 59, 74)
end
if version ~= ARGV[1] or expires <= tonumber(ARGV[2]) then
  return 0
end
local user = redis.call('GETRANGE', KEYS[1], len, len + length - 1)
if string.len(user) ~= length or user ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], 'n2' .. string.sub(head, 3, 42) .. lifetime .. ARGV[4] .. user .. ARGV[5], 'KEEPTTL')
return 1
