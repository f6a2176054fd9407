-- Kafka mode. The relay sends, after every acknowledged batch, a watermark to each
-- partition: "every ledger event up to this position bound for this partition came
-- before me". The smallest watermark over all partitions is the position up to which
-- the projections are complete, which is what point-in-time metrics may use.
CREATE TABLE IF NOT EXISTS stream_watermarks (
    partition UInt32,
    partitions UInt32,
    position UInt64,
    recorded_at DateTime
) ENGINE = ReplacingMergeTree()
ORDER BY (partition, position);

-- Messages the projector could not use: kept with their reason, counted, never dropped.
CREATE TABLE IF NOT EXISTS dead_letters (
    topic String,
    partition UInt32,
    offset UInt64,
    reason String,
    raw String,
    recorded_at DateTime
) ENGINE = ReplacingMergeTree()
ORDER BY (topic, partition, offset)
