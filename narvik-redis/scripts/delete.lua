-- Single node: deletes a record and its index entry, atomic, knowing the session id alone. The
-- index is named after the user stored in the record (see update_by_id.lua); never used on a
-- cluster.
-- KEYS: record. ARGV: session id, index prefix (`PREFIX:u:{`).
-- Returns 1 deleted, 0 no record.
local user = owner(KEYS[1])
-- Missing, or not a narvik record: remove whatever is there; no index entry is known.
redis.call('DEL', KEYS[1])
if not user then
  return 0
end
redis.call('ZREM', index_of(ARGV[2], user), ARGV[1])
return 1
