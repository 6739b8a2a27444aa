-- Single node: deletes records of one user and their index entries, atomic per batch.
-- KEYS: user index, then one record key per ARGV session id.
for i, session_id in ipairs(ARGV) do
  redis.call('DEL', KEYS[i + 1])
  redis.call('ZREM', KEYS[1], session_id)
end
return #ARGV
