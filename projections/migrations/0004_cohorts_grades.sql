-- Priority cohorts and grades. The raw table gains the columns their events need (a cohort's
-- name rides in school_name, a grade's subject in subject and its student's token in
-- student_id); members are tokens, never student ids.
ALTER TABLE ledger_events ADD COLUMN cohort_id String;
ALTER TABLE ledger_events ADD COLUMN members Array(String);
ALTER TABLE ledger_events ADD COLUMN term String;
ALTER TABLE ledger_events ADD COLUMN term_end Date;
ALTER TABLE ledger_events ADD COLUMN score Float64;

-- One row per cohort.updated event: the cohort's whole membership as 64-bit student keys
-- (the same key session_facts holds). Membership as of P is the row with the highest
-- position <= P (argMax over the unique position, so a copied row changes nothing).
CREATE TABLE IF NOT EXISTS cohort_updates_g1 (
    district_id String,
    cohort_id String,
    position UInt64,
    cohort_name String,
    members Array(UInt64)
) ENGINE = ReplacingMergeTree()
ORDER BY (district_id, cohort_id, position);

-- One row per grade.recorded event. The latest position per (student, subject, term) counts.
CREATE TABLE IF NOT EXISTS grade_facts_g1 (
    district_id String,
    student_key UInt64,
    subject String,
    term String,
    term_end Date,
    score Float64,
    position UInt64
) ENGINE = ReplacingMergeTree()
ORDER BY (district_id, subject, term, student_key, position)
