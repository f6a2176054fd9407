-- Provenance (domain/provenance.py) in the read models. `ledger_events` keeps each event's
-- own record: the provider, the emitter key's id (API) or the source file's SHA-256
-- (import-sessions). `session_facts` carries the session's provider (its request's, on
-- every step, like the other request attributes) and, on the matched and completed steps,
-- the matched tutor, so the tutor-overlap audit reads one completed fact per session.
-- Rows projected before this migration hold '' (no provenance, or not yet filled):
-- `tutorledger rebuild` fills them from the ledger. Every generation's table gets the
-- columns (schema.complete_columns).
ALTER TABLE ledger_events ADD COLUMN provider String DEFAULT '';
ALTER TABLE ledger_events ADD COLUMN key_id String DEFAULT '';
ALTER TABLE ledger_events ADD COLUMN source_sha256 String DEFAULT '';
ALTER TABLE session_facts_g1 ADD COLUMN provider String DEFAULT '';
ALTER TABLE session_facts_g1 ADD COLUMN tutor_id String DEFAULT '';
