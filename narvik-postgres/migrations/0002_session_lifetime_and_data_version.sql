-- narvik-postgres migration 2: each session's own sliding lifetime (NULL = the engine's) and
-- the version of its data, bumped by each conditional data update. Rows written before read
-- as lifetime NULL, version 0.
ALTER TABLE {{table}}
    ADD COLUMN IF NOT EXISTS lifetime_ms bigint NULL,
    ADD COLUMN IF NOT EXISTS data_version bigint NOT NULL DEFAULT 0;
