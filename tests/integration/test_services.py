"""The real-server fixtures give working servers: other integration tests build on these."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from clickhouse_driver import Client
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from waiting import wait_until

from devtools import services
from devtools.services.procs import spawn, wait_ready


def test_pg_dsn_is_a_fresh_writable_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        db = conn.execute("SELECT current_database()").fetchone()
        assert db is not None and db[0] == pg_dsn.rsplit("/", 1)[1]
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        assert conn.execute("SELECT note FROM t ORDER BY id").fetchall() == [("a",), ("b",)]


def test_tansu_round_trip_over_three_partitions(kafka_bootstrap: str) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    services.create_topic(kafka_bootstrap, topic, partitions=3)
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(10)}

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in sent.items()]
        partitions_used = {f.get(timeout=10).partition for f in futures}
    finally:
        producer.close()
    assert partitions_used <= {0, 1, 2}
    assert len(partitions_used) > 1

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        received: dict[bytes, bytes] = {}

        def receive() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                received.update((r.key, r.value) for r in records)
            return len(received) >= len(sent)

        wait_until(receive, "every message sent", interval=0)
    finally:
        consumer.close()
    assert received == sent


def test_clickhouse_is_debian_18_16_with_merge_tree(clickhouse_url: str) -> None:
    client = Client.from_url(clickhouse_url)
    try:
        assert client.execute("SELECT version()")[0][0].startswith("18.16")
        assert client.execute("SELECT currentDatabase()")[0][0] == clickhouse_url.rsplit("/")[-1]
        client.execute(
            "CREATE TABLE sessions (id UInt32, school String, minutes UInt16)"
            " ENGINE = MergeTree ORDER BY id"
        )
        rows = [(i, f"school-{i % 3}", 30 + i) for i in range(100)]
        client.execute("INSERT INTO sessions (id, school, minutes) VALUES", rows)
        assert client.execute("SELECT id, school, minutes FROM sessions ORDER BY id") == rows
        totals = client.execute(
            "SELECT school, sum(minutes) FROM sessions GROUP BY school ORDER BY school"
        )
        assert totals == [
            (f"school-{s}", sum(m for _, school, m in rows if school == f"school-{s}"))
            for s in range(3)
        ]
    finally:
        client.disconnect()


def test_a_server_that_dies_fails_fast_with_its_output(tmp_path: Path) -> None:
    proc = spawn("sh", ["sh", "-c", "echo broken config >&2; exit 3"], tmp_path / "out.log")
    with pytest.raises(services.ServiceError, match="exited with 3: broken config"):
        wait_ready(proc, lambda: 1 / 0, timeout=10)
