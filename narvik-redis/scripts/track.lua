-- Cluster: one sorted-set step of a save (user index or queue bucket).
-- KEYS: sorted set. ARGV: expires ms, member, prune-before ms or '', alive-until ms.
-- Returns 1 if added.
return track(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
