-- Events stored by reference: the row names a record of the service's own tables (payload_ref)
-- and the relay assembles the event from it (payload then holds the event id): see
-- bs_store::outbox::Payload::Reference.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS payload_ref BIGINT;
