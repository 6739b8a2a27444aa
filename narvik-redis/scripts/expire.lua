-- Single node: one batch of due expiry-queue entries (scored at or before `now`), atomic.
-- KEYS: queue bucket, then for each entry its record and its user's index.
-- ARGV: now ms (the caller's), queue grace ms, then for each entry: queue member, session id,
-- user id.
-- A record of that user expired at `now` is deleted with its index entry, whether or not the
-- server has expired it yet; one live at `now` (extended) goes back in the queue at its expiry;
-- an entry whose record is gone (expired by the server, deleted) or now another user's is
-- dropped with its index entry. Returns how many records it deleted.
local now = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])
local deleted = 0
for i = 1, (#KEYS - 1) / 2 do
  local record, index = KEYS[2 * i], KEYS[2 * i + 1]
  local member, session_id, user = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  local stored, expires = header(record)
  if stored == user and expires > now then
    redis.call('ZADD', KEYS[1], int(expires), member)
    keep_until(KEYS[1], expires + grace)
  else
    if stored == user then
      redis.call('DEL', record)
      deleted = deleted + 1
    end
    redis.call('ZREM', index, session_id)
    redis.call('ZREM', KEYS[1], member)
  end
end
return deleted
