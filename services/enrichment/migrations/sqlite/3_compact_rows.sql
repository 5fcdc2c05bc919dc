-- attacker_data duplicated the attackers inside payload and was never read.
ALTER TABLE enriched_killmails DROP COLUMN attacker_data;
-- payload and source_event of 1 KB or more are stored zstd-compressed in these columns
-- (the text column is then ''): see bs_enrichment::store::Stored.
ALTER TABLE enriched_killmails ADD COLUMN payload_zstd BLOB;
ALTER TABLE enriched_killmails ADD COLUMN source_event_zstd BLOB;
