-- Cluster: the index step of an expiry update (before the record step). GT: the entry only
-- ever moves later here, so it is never scored before its record's expiry.
-- KEYS: user index. ARGV: expires ms, session id.
retime_index(KEYS[1], 'GT', ARGV[1], ARGV[2])
return 1
