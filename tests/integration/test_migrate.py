"""migrate-ledger on both event stores: a plaintext-format ledger written row by row as the
old versions wrote it, migrated into a new store of the same kind, then projected. Every
metric of both districts equals the metrics of the same events ingested fresh; the chain
verifies and continues the old heads; no student id, topic or comment is readable in the
new store (file bytes on SQLite, a full pg_dump on PostgreSQL); a re-run is refused; the
old ledger is byte-for-byte (SQLite) or row-for-row (PostgreSQL) what it was. Also: SQLite
into PostgreSQL; Kafka mode (relay, tansu, projector, ClickHouse 18.16) on a migrated
ledger; a crash mid-way, refused as unfinished, then resumed, on both stores."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from migration_data import (
    DISTRICTS,
    SECRETS,
    decrypted,
    digest_of,
    events,
    files_of,
    interrupted,
    plaintext_ledger,
    run,
)

from devtools import services
from tutorledger.api.cli.audit import metric_answers
from tutorledger.api.runtime import Runtime
from tutorledger.bench.legacy_ledger import put_school
from tutorledger.consumers import continuity
from tutorledger.consumers.migrate import migrate
from tutorledger.domain.errors import MigrationIncomplete, TargetNotEmpty
from tutorledger.infra.eventstore.audit import verify_chain
from tutorledger.infra.eventstore.legacy import open_store, sql_rows
from tutorledger.infra.settings import Settings

VOLATILE = {"as_of_position", "head_hash"}  # positions differ: the new chains open with a marker


@pytest.fixture
def stores(store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """(old, target, fresh) stores of the parametrised kind."""
    if store_url.startswith("sqlite"):
        yield [store_url, f"sqlite:///{tmp_path}/new.db", f"sqlite:///{tmp_path}/fresh.db"]
        return
    server = request.getfixturevalue("pg_server")
    names = [f"{services.TEST_DB_PREFIX}{uuid.uuid4().hex}" for _ in range(2)]
    urls = [services.create_database(n, server) for n in names]
    yield [store_url, *urls]
    for name in names:
        services.drop_database(name, server)


def content_of(url: str) -> str:
    """Everything the store holds, as text: its files, or a plain pg_dump with data (bytea
    values, which pg_dump writes as hex, decoded)."""
    if url.startswith("sqlite"):
        return "".join(p.read_bytes().decode("latin-1") for p in files_of(url))
    dump = subprocess.run(["pg_dump", "--no-owner", url], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    blobs = (bytes.fromhex(h).decode("latin-1") for h in re.findall(r"\\\\x([0-9a-f]+)", dump))
    return dump + "".join(blobs)


def old_state(url: str) -> str:
    if url.startswith("sqlite"):
        return digest_of(url)
    ledger = open_store(url, read_only=True)
    try:
        table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
        rows = sql_rows(ledger, f"SELECT notification_id, topic, state FROM {table} "
                        "ORDER BY notification_id")  # fmt: skip
        index = sql_rows(ledger, "SELECT * FROM ledger_index ORDER BY position")
        tables = sql_rows(ledger, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                          "ORDER BY tablename")  # fmt: skip
        return repr((rows, index, tables))
    finally:
        ledger.close()


def without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def figures(store: str, chdb: str) -> dict[str, Any]:
    runtime = Runtime.build(Settings(event_store=store, clickhouse=chdb))
    try:
        runtime.sync()
        head = runtime.ledger_head()
        return {d: without_volatile(metric_answers(runtime, d, None, None, head)[1])
                for d in DISTRICTS}  # fmt: skip
    finally:
        runtime.stop()


def ingest_fresh(url: str) -> None:
    put_school(url, DISTRICTS[0], "sch-01", {"5": 120, "6": 110})
    ledger = open_store(url)
    try:
        raws = events()
        for i in range(0, len(raws), 500):
            ledger.record_events(raws[i : i + 500])
    finally:
        ledger.close()


def test_migration_keeps_every_figure_and_leaves_nothing_readable(
    stores: list[str], chdb_dir: Path
) -> None:
    old, target, fresh = stores
    plaintext_ledger(old)
    before = old_state(old)
    assert any(s in content_of(old) for s in SECRETS)  # the test's premise: plaintext is there
    source, new = open_store(old, read_only=True), open_store(target)
    try:
        report = migrate(source, new, page=250)
        assert report.migrated == report.total
        assert verify_chain(new.recorder, new.mapper).ok
        ok, problem, links = continuity.check(source, new)
        assert ok and problem is None, links
        with pytest.raises(TargetNotEmpty):
            migrate(source, new)
    finally:
        source.close()
        new.close()
    assert old_state(old) == before, "the old ledger was changed"
    text = content_of(target)
    assert not [s for s in SECRETS if s in text], "plaintext in the migrated store"
    ingest_fresh(fresh)
    chdb = [f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}" for _ in range(2)]
    migrated, ingested = figures(target, chdb[0]), figures(fresh, chdb[1])
    assert migrated == ingested
    assert migrated[DISTRICTS[0]]["participation"] != migrated[DISTRICTS[1]]["participation"]


def test_a_sqlite_ledger_migrates_into_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    old = f"sqlite:///{tmp_path}/old.db"
    accepted = plaintext_ledger(old, students=20)
    source, new = open_store(old, read_only=True), open_store(pg_dsn)
    try:
        report = migrate(source, new, page=64)
        assert report.migrated == len(accepted) + 1
        assert verify_chain(new.recorder, new.mapper).ok
        assert continuity.check(source, new)[0]
    finally:
        source.close()
        new.close()
    assert not [s for s in SECRETS if s in content_of(pg_dsn)]


def test_a_migrated_ledger_flows_through_kafka_mode_with_the_same_figures(
    pg_dsn: str, kafka_bootstrap: str, clickhouse_url: str, clickhouse_server: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Relay → Kafka → projector → ClickHouse 18.16 on a migrated PostgreSQL ledger: the
    markers are projected (not dead-lettered) and every figure equals a fresh ingest's,
    projected into the same server."""
    from clickhouse_driver import Client
    from pipeline import kafka_settings, running_pipeline, wait_caught_up

    old = f"sqlite:///{tmp_path}/old.db"
    plaintext_ledger(old, students=40)
    source, new = open_store(old, read_only=True), open_store(pg_dsn)
    try:
        migrate(source, new)
    finally:
        source.close()
        new.close()
    settings = kafka_settings(pg_dsn, kafka_bootstrap, clickhouse_url)
    with running_pipeline(settings) as store:
        head = wait_caught_up(settings, store)
        kinds = dict(store.execute("SELECT type, count() FROM ledger_events GROUP BY type"))
        assert kinds["ledger.migrated"] == len(DISTRICTS)
        assert sum(kinds.values()) == head
        runtime = Runtime.build(settings)
        try:
            migrated = {d: without_volatile(metric_answers(runtime, d, None, None, head)[1])
                        for d in DISTRICTS}  # fmt: skip
        finally:
            runtime.stop()
    fresh = f"sqlite:///{tmp_path}/fresh.db"
    put_school(fresh, DISTRICTS[0], "sch-01", {"5": 120, "6": 110})
    ledger = open_store(fresh)
    try:
        ledger.record_events(events(40))
    finally:
        ledger.close()
    name = f"t_{uuid.uuid4().hex}"
    parsed = urlparse(clickhouse_server)
    client = Client(host=parsed.hostname, port=parsed.port, user="default")
    client.execute(f"CREATE DATABASE {name}")
    try:
        ingested = figures(fresh, parsed._replace(path=f"/{name}").geturl())
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {name}")
        client.disconnect()
    assert migrated == ingested


def test_an_interrupted_migration_resumes_on_both_stores(stores: list[str]) -> None:
    old, target, _ = stores
    accepted = plaintext_ledger(old, students=20)
    interrupted(old, target, page=40, after_pages=2)
    half = open_store(target, read_only=True)
    try:
        assert continuity.unfinished(half)
        with pytest.raises(MigrationIncomplete):  # the relay and the projectors refuse it
            continuity.refuse_unfinished(half)
    finally:
        half.close()
    with pytest.raises(MigrationIncomplete):  # the Kafka projector's look, by URL
        continuity.refuse_unfinished_store(target)
    report = run(old, target, page=40)
    assert report.resumed_after > 0 and report.migrated == report.total - 80
    continuity.refuse_unfinished_store(target)
    sessions = [e for e in decrypted(target) if e["type"].startswith("session.")]
    assert sessions == accepted
