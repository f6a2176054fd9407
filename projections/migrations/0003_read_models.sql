-- Read models: what the metrics read, maintained as events are projected. Each rebuild
-- fills a new generation (tables suffixed _g<N>) and then inserts one row here; readers use
-- the highest generation, so they see every model of one generation or of the next, never a
-- mix (a two-table RENAME is not atomic on a ClickHouse server). No row yet = generation 1.
CREATE TABLE IF NOT EXISTS read_model_generations (
    generation UInt32,
    position UInt64,
    created_at DateTime
) ENGINE = MergeTree()
ORDER BY generation;

-- One row per session lifecycle event (step 0 requested, 1 matched, 2 completed,
-- 3 cancelled, 4 surveyed), carrying its session's request attributes, so a metric is one
-- scan of the steps it needs with no per-session grouping. `position` is the step's own
-- ledger position: `position <= P` gives the session as it stood at P. Students appear only
-- as a 64-bit key of their id. Writers skip positions already present; the
-- ReplacingMergeTree key (ending in the unique position) also collapses any copy on merge.
-- Partitioned by position range so that the writers' "already present?" lookup is cheap.
CREATE TABLE IF NOT EXISTS session_facts_g1 (
    district_id String,
    step UInt8,
    school_id String,
    subject String,
    grade Int8,
    student_key UInt64,
    session_id String,
    requested_at DateTime('UTC'),
    requested_us UInt32,
    position UInt64,
    wait_us Int64,
    helped Int8,
    rating Int8
) ENGINE = ReplacingMergeTree()
PARTITION BY intDiv(position, 4194304)
ORDER BY (district_id, step, school_id, requested_at, position);

-- One row per school.updated event: each school's enrolment history (read with argMax over
-- a key that ends in the position, so copies cannot change an answer).
CREATE TABLE IF NOT EXISTS school_updates_g1 (
    district_id String,
    school_id String,
    position UInt64,
    school_name String,
    as_of Date,
    enrollment_grades Array(Int8),
    enrollment_counts Array(UInt32)
) ENGINE = ReplacingMergeTree()
ORDER BY (district_id, school_id, position)
