-- Cluster: one sorted-set step (user index or queue bucket) of a save or an update.
-- KEYS: sorted set. ARGV: 'GT' or 'LT', expires ms, member, prune ('1' or ''), alive-until ms.
-- Returns 1 if added.
return track(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
