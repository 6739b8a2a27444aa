-- Cluster: the index step of an expiry update (before the record step).
-- KEYS: user index. ARGV: expires ms, session id.
retime_index(KEYS[1], ARGV[1], ARGV[2])
return 1
