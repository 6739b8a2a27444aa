-- narvik-postgres migration 1: the session table and its two indexes.
-- {{table}}, {{user_id_index}} and {{expires_at_index}} are replaced by validated, double-quoted
-- identifiers before this runs; nothing else is templated.
CREATE TABLE IF NOT EXISTS {{table}} (
    id          text        PRIMARY KEY,
    user_id     text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    data        jsonb       NOT NULL
);

-- Per-user listing and deletion touch only that user's rows. A hash index holds a hash of the
-- key, so user ids of any length are indexable (a btree entry is capped at ~2.7 kB), and the
-- per-user calls only ever ask for equality.
CREATE INDEX IF NOT EXISTS {{user_id_index}} ON {{table}} USING hash (user_id);

-- The expired purge walks this index from the oldest expiry up to now.
CREATE INDEX IF NOT EXISTS {{expires_at_index}} ON {{table}} (expires_at);
