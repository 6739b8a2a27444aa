-- Single node: insert-only save of a record with its index and expiry-queue entries, atomic.
-- KEYS: record, user index, queue bucket.
-- ARGV: value, expires ms, now ms (wall clock), session id, queue member, bucket alive-until ms.
-- Returns 1 saved, 0 duplicate id (nothing changed), 2 already expired (nothing kept).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if tonumber(ARGV[2]) <= tonumber(ARGV[3]) then
  return 2
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
track(KEYS[2], 'GT', ARGV[2], ARGV[4], '1', ARGV[2])
-- LT: a queue entry is never due after its record expires (an older entry of the same id
-- may be due earlier: the purge requeues it then).
track(KEYS[3], 'LT', ARGV[2], ARGV[5], '', ARGV[6])
return 1
