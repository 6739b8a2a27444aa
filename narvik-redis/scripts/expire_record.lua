-- Cluster: the record step of expired deletion for one due queue entry.
-- KEYS: record. ARGV: now ms (the caller's), user id.
-- Returns 1 deleted (that user's record, expired at `now`), 0 no such record (gone, or now
-- another user's), or the record's later expiry as a string (live at `now`: requeue it).
local stored, expires = header(KEYS[1])
if stored ~= ARGV[2] then
  return 0
end
if expires > tonumber(ARGV[1]) then
  return int(expires)
end
redis.call('DEL', KEYS[1])
return 1
