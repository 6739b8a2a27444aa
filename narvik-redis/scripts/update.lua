-- Single node: moves the expiry of a live record of a known user, its index entry and its
-- expiry-queue entry, atomic (the engine's extension: one round trip).
-- KEYS: record, user index, queue bucket.
-- ARGV: expires ms, expires hex, session id, user id, now ms (wall clock), queue member,
-- bucket alive-until ms.
-- Returns 1 done, 0 no record or expired (nothing created or revived), -1 the record has
-- another user (nothing changed).
local done = retime_record(KEYS[1], ARGV[1], ARGV[2], ARGV[4], ARGV[5])
if done == 1 then
  retime_index(KEYS[2], '', ARGV[1], ARGV[3])
  -- LT: an earlier expiry must be due in the queue by then; a later one leaves the entry,
  -- which the purge requeues when it comes due.
  track(KEYS[3], 'LT', ARGV[1], ARGV[6], '', ARGV[7])
end
return done
