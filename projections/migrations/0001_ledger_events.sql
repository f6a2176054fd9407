-- One row per ledger event, keyed by its ledger position. Redelivery writes an identical
-- row with the same key; ReplacingMergeTree plus FINAL in every read collapses it.
-- Portable to ClickHouse 18.16: no LowCardinality, DateTime64, Nullable-free.
CREATE TABLE IF NOT EXISTS ledger_events (
    position UInt64,
    event_id String,
    type String,
    district_id String,
    session_id String,
    school_id String,
    occurred_at DateTime('UTC'),
    occurred_us UInt32,
    student_id String,
    grade Int8,
    subject String,
    topic String,
    tutor_id String,
    requested_tutor_id String,
    outcome String,
    helped Int8,
    rating Int8,
    comment String,
    reason String,
    school_name String,
    enrollment_grades Array(Int8),
    enrollment_counts Array(UInt32),
    as_of Date
) ENGINE = ReplacingMergeTree()
ORDER BY (district_id, position)
