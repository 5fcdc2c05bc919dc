-- attacker_data duplicated the attackers inside payload and was never read.
ALTER TABLE enriched_killmails DROP COLUMN IF EXISTS attacker_data;
-- payload and source_event of 1 KB or more are stored zstd-compressed in these columns
-- (the text column is then ''): see bs_enrichment::store::Stored.
ALTER TABLE enriched_killmails ADD COLUMN IF NOT EXISTS payload_zstd BYTEA;
ALTER TABLE enriched_killmails ADD COLUMN IF NOT EXISTS source_event_zstd BYTEA;
