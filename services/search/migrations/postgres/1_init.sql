-- The search service's own state: the indexer's mirror (entity counters and names, killmail
-- revisions, live battles), so a restart keeps the activity ranking. The search index itself
-- lives in the backend (tantivy directory or Typesense); this is only what ranking needs.

-- kind: 1 character, 2 corporation, 3 alliance, 4 system, 5 ship type.
-- body: the mirror's JSON (name, ticker, affiliation, kills, losses, battles, last seen).
CREATE TABLE search_entities (
    kind BIGINT NOT NULL,
    id BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- Highest revision applied per killmail; presence = its counters are in.
CREATE TABLE search_killmails (
    killmail_id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL
);

-- Latest snapshot and counted members of live battles (state is JSON); merged or deleted
-- battles keep their revision with a NULL state, so a late older update stays ignored.
CREATE TABLE search_battles (
    battle_id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL,
    state TEXT
);
