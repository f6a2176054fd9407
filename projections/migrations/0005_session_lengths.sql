-- A completed step's fact carries its session's wait to the match (`matched_us`, beside its
-- own request → completion time in `wait_us`), so a session's length is one row's
-- difference: dosage and the long-session alert need no per-session GROUP BY. The matched
-- step always precedes the completion in the ledger, so the length stays exact at any
-- `as_of_position`. Facts written before this column hold -1 there; the queries then fall
-- back to grouping the matched and completed facts by session (`tutorledger rebuild`
-- fills the column). Every generation's table gets the column (schema.complete_columns).
ALTER TABLE session_facts_g1 ADD COLUMN matched_us Int64 DEFAULT -1;
