"""An erasure on PostgreSQL leaves the destroyed key in no table file, even while a reader
that began before it is still open: the scrub waits for that reader, and only for readers
older than itself (a busy server's newer transactions do not hold it back)."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
from test_backup import loaded_runtime, store_texts
from test_privacy import DISTRICT

from tutorledger.infra.settings import Settings


def test_the_scrub_outlasts_an_older_reader_and_leaves_no_key(
    pg_dsn: str, chdb_url: str, tmp_path: Path
) -> None:
    settings = Settings(event_store=pg_dsn, clickhouse=chdb_url, var_dir=tmp_path / "var",
                        erasure_journal=tmp_path / "erasures.jsonl")  # fmt: skip
    runtime, token, head, _, secret = loaded_runtime(settings)
    try:
        with psycopg.connect(
            pg_dsn, autocommit=True
        ) as old:  # a reader holding a snapshot from before
            snapshot(old)
            erasing = threading.Thread(
                target=runtime.ledger.erase, args=(DISTRICT, token, "parent_request")
            )
            erasing.start()
            while runtime.ledger_head() < head + 1:  # the erasure is committed …
                erasing.join(0.05)
            assert erasing.is_alive(), "the scrub did not wait for the older reader"
            old.execute("ROLLBACK")  # … and the scrub may run once the old snapshot is gone
        erasing.join()
        assert runtime.ledger.index.student_keys([token])[token].secret is None
        texts = store_texts(pg_dsn)
        assert all(secret.decode("latin-1") not in t for t in texts), "key left in a file"
    finally:
        runtime.stop()


def test_newer_readers_do_not_hold_the_scrub_back(pg_dsn: str, chdb_url: str,
                                                  tmp_path: Path) -> None:  # fmt: skip
    """Overlapping short readers, so one is always open (a busy server): the scrub settles
    once those older than it end, where waiting for no reader at all would never."""
    settings = Settings(event_store=pg_dsn, clickhouse=chdb_url, var_dir=tmp_path / "var",
                        erasure_journal=tmp_path / "erasures.jsonl")  # fmt: skip
    runtime, *_ = loaded_runtime(settings)
    stop = threading.Event()
    reading = threading.Event()

    def readers() -> None:
        with (
            psycopg.connect(pg_dsn, autocommit=True) as a,
            psycopg.connect(pg_dsn, autocommit=True) as b,
        ):
            for conn in (a, b):
                snapshot(conn)
            while not stop.is_set():
                for conn in (a, b):  # the other stays open while this one starts again
                    conn.execute("ROLLBACK")
                    snapshot(conn)
                    reading.set()
            a.execute("ROLLBACK")
            b.execute("ROLLBACK")

    busy = threading.Thread(target=readers)
    busy.start()
    try:
        reading.wait()
        index = runtime.ledger.index
        index.settle_seconds = 60.0  # type: ignore[attr-defined]  # False: it waited it all out
        assert index.scrub() is True
    finally:
        stop.set()
        busy.join()
        runtime.stop()


def snapshot(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Open a transaction whose one snapshot stays held until it ends (the connection is in
    autocommit, so BEGIN is the transaction's start, not a warning inside one)."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    conn.execute("SELECT 1").fetchone()  # takes the snapshot; no lock a VACUUM FULL waits on
