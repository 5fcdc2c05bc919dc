-- Large payloads are stored zstd-compressed here (payload is then ''): see bs_store::outbox::Payload.
ALTER TABLE outbox ADD COLUMN payload_zstd BLOB;
