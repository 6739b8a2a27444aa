-- Single node: as update.lua for a caller that knows the session id alone. The user comes from
-- the stored record, and so does the name of its index (the one key this script does not get
-- in KEYS: it can be known only once the record is read, and on one server every key is
-- local). Never used on a cluster.
-- KEYS: record, queue bucket.
-- ARGV: expires ms, expires hex, session id, now ms (wall clock), index prefix (`PREFIX:u:{`),
-- bucket alive-until ms.
-- Returns 1 done, 0 no record or expired (nothing created or revived).
local user = owner(KEYS[1])
if not user then
  return 0
end
local done = retime_record(KEYS[1], ARGV[1], ARGV[2], user, ARGV[4])
if done == 1 then
  retime_index(index_of(ARGV[5], user), '', ARGV[1], ARGV[3])
  track(KEYS[2], 'LT', ARGV[1], hex(user) .. ':' .. ARGV[3], '', ARGV[6])
end
return done
