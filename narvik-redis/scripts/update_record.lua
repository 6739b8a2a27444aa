-- Cluster: the record step of an expiry update (after the index step).
-- KEYS: record. ARGV: expires ms, expires hex, user id, now ms (wall clock).
-- Returns as retime_record.
return retime_record(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
