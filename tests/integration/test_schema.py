"""ClickHouse migrations when several processes start at once, and on a store an older
release migrated (its versions in the TinyLog `schema_migrations` table)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.eventstore.disclosures import DisclosureLog
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings
from tutorledger.projections import schema

AT = datetime(2026, 1, 5, tzinfo=UTC)
RACERS = 6
T = TypeVar("T")


def race(action: Callable[[T], object], subjects: list[T]) -> list[BaseException]:
    """Run `action` on every subject in its own thread, all released at once; the errors."""
    start = threading.Barrier(len(subjects))
    errors: list[BaseException] = []

    def run(subject: T) -> None:
        start.wait()
        try:
            action(subject)
        except BaseException as exc:  # noqa: BLE001 - collected for the caller to assert on
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in subjects]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_processes_starting_together_all_migrate_the_server(clickhouse_url: str) -> None:
    """`serve --workers N`, the relay and the projector each migrate at startup; on a
    TinyLog versions table their concurrent inserts failed and uvicorn stopped every worker."""
    stores = [open_projection_store(Settings(clickhouse=clickhouse_url)) for _ in range(RACERS)]
    errors = race(schema.migrate, stores)
    try:
        assert errors == []
        all_versions = {v for v, _, _ in schema.migrations()}
        assert schema.applied_versions(stores[0]) == all_versions
        assert schema.migrate(stores[0]) == []
    finally:
        for s in stores:
            s.close()


@pytest.fixture(params=["chdb", "server"])
def store(request: pytest.FixtureRequest) -> Iterator[ProjectionStore]:
    """A store on a fresh database, on chdb and on the ClickHouse server."""
    url = request.getfixturevalue("chdb_url" if request.param == "chdb" else "clickhouse_url")
    store = open_projection_store(Settings(clickhouse=url))
    try:
        yield store
    finally:
        store.close()


def test_versions_an_older_release_recorded_are_honoured(store: ProjectionStore) -> None:
    store.execute(
        f"CREATE TABLE {schema.LEGACY_VERSIONS_TABLE} "
        "(version UInt32, name String, applied_at DateTime) ENGINE = TinyLog"
    )
    old = [(v, n, sql) for v, n, sql in schema.migrations() if v < 4]
    for version, name, sql in old:
        for statement in schema.statements(sql):
            store.execute(statement)
        store.insert(
            schema.LEGACY_VERSIONS_TABLE,
            ("version", "name", "applied_at"),
            [(version, name, AT)],
        )
    later = [name for version, name, _ in schema.migrations() if version >= 4]
    assert schema.migrate(store) == later
    assert schema.migrate(store) == []
    columns = {str(r[0]) for r in store.execute("DESCRIBE TABLE ledger_events")}
    assert {"cohort_id", "term", "score"} <= columns


def test_a_generation_rebuilt_before_a_column_was_added_gets_it(store: ProjectionStore) -> None:
    """A migration alters generation 1; a store rebuilt to a later one reads that one."""
    schema.migrate(store)
    store.execute("CREATE TABLE session_facts_g2 AS session_facts_g1")
    store.execute("ALTER TABLE session_facts_g2 DROP COLUMN matched_us")
    assert schema.migrate(store) == []  # nothing left to apply; columns completed anyway
    first, second = (
        [tuple(r[:4]) for r in store.execute(f"DESCRIBE TABLE session_facts_g{n}")] for n in (1, 2)
    )
    assert second == first and ("matched_us", "Int64", "DEFAULT") in {r[:3] for r in first}


def test_workers_making_the_disclosure_log_at_once_all_succeed(pg_dsn: str) -> None:
    """Each `serve` worker makes the disclosure tables, function and trigger on its first
    disclosure; on PostgreSQL, doing so at the same instant must not fail any of them."""
    ledgers = [open_ledger(Settings(event_store=pg_dsn)) for _ in range(RACERS)]
    errors = race(lambda ledger: DisclosureLog(ledger.recorder), ledgers)
    try:
        assert errors == []
        log = DisclosureLog(ledgers[0].recorder)
        with pytest.raises(Exception, match="append-only"):
            with log._cursor(commit=True) as c:
                c.execute("DELETE FROM disclosures")
    finally:
        for ledger in ledgers:
            ledger.close()
