-- Single node: moves the expiry of an existing record and its index entry, atomic.
-- KEYS: record, user index. ARGV: expires ms, expires hex, session id, user id.
-- Returns 1 done, 0 no record (nothing created), -1 the record has another user.
local done = retime_record(KEYS[1], ARGV[1], ARGV[2], ARGV[4])
if done == 1 then
  retime_index(KEYS[2], ARGV[1], ARGV[3])
end
return done
