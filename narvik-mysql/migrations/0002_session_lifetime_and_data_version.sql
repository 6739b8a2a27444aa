-- narvik-mysql migration 2: each session's own sliding lifetime and its data version.
-- {{table}} is replaced as in migration 1. Rows written before this read as
-- `lifetime: None` (NULL: the engine's configured lifetime) and `data_version: 0`.
--
-- lifetime_ms is whole milliseconds; data_version grows by one per successful data update.
ALTER TABLE {{table}}
    ADD COLUMN IF NOT EXISTS lifetime_ms  BIGINT NULL,
    ADD COLUMN IF NOT EXISTS data_version BIGINT NOT NULL DEFAULT 0;
