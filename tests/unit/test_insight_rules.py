"""Rules of the cohort and grade events off the stream, and what the API declares for them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tutorledger.api.app import create_app
from tutorledger.domain.cohort import cohort_envelope
from tutorledger.domain.grades import Grade, grade_envelope
from tutorledger.domain.published import parse_published
from tutorledger.infra.settings import Settings
from tutorledger.projections.filters import Filters, facts_where

AT = datetime(2026, 3, 2, tzinfo=UTC)
TOKEN = "tok_" + "a" * 24


def test_the_stream_carries_tokens_only() -> None:
    cohort = cohort_envelope("d1", "c1", "Priority", [TOKEN, TOKEN], AT)
    assert parse_published(cohort)["payload"] == {"name": "Priority", "student_tokens": [TOKEN]}
    grade = grade_envelope(
        "d1", TOKEN, Grade("stu-1", "algebra", "t1", date(2026, 1, 23), 88.5), AT
    )
    assert parse_published(grade)["payload"]["score"] == 88.5
    bad: list[dict[str, Any]] = [
        {**cohort, "payload": {"name": "Priority", "student_ids": ["stu-1"]}},
        {**cohort, "payload": {"name": "Priority", "student_tokens": ["stu 1"]}},
        {**grade, "payload": {**grade["payload"], "student_id": "stu-1"}},
        {**grade, "payload": {**grade["payload"], "score": 101}},
    ]
    for doc in bad:
        with pytest.raises(ValidationError):
            parse_published(doc)


def test_grade_event_ids_depend_on_the_facts_only() -> None:
    g = Grade("stu-1", "algebra", "t1", date(2026, 1, 23), 70.0)
    later = datetime(2027, 1, 1, tzinfo=UTC)
    assert (
        grade_envelope("d1", TOKEN, g, AT)["event_id"]
        == grade_envelope("d1", TOKEN, g, later)["event_id"]
    )
    changed = Grade("stu-1", "algebra", "t1", date(2026, 1, 23), 71.0)
    assert (
        grade_envelope("d1", TOKEN, g, AT)["event_id"]
        != grade_envelope("d1", TOKEN, changed, AT)["event_id"]
    )


def test_a_cohort_filter_reads_one_pinned_generation() -> None:
    with pytest.raises(ValueError):
        facts_where(Filters("d1", 10, "UTC", cohort_id="c1"), (0,))
    where = facts_where(Filters("d1", 10, "UTC", cohort_id="c1", generation=3), (0,))
    assert "cohort_updates_g3" in where and "%(cohort_id)s" in where


def test_openapi_declares_every_status(tmp_path: Path) -> None:
    paths = create_app(Settings(var_dir=tmp_path)).openapi()["paths"]
    put = set(paths["/v1/cohorts/{district_id}/{cohort_id}"]["put"]["responses"])
    assert put == {"200", "400", "401", "403", "409", "413", "422", "503"}
    listed = set(paths["/v1/cohorts"]["get"]["responses"])
    assert listed == {"200", "401", "403", "422", "503"}
    outcomes = set(paths["/v1/metrics/outcomes"]["get"]["responses"])
    assert outcomes == {"200", "401", "403", "404", "422", "503"}
    for metric in ("participation", "demand", "wait-times", "engagement"):
        assert "404" in paths[f"/v1/metrics/{metric}"]["get"]["responses"]  # unknown_cohort
        names = {p["name"] for p in paths[f"/v1/metrics/{metric}"]["get"]["parameters"]}
        assert "cohort_id" in names


def test_a_migration_cut_short_runs_again(tmp_path: Path) -> None:
    from tutorledger.infra.clickhouse import open_projection_store
    from tutorledger.projections import schema

    store = open_projection_store(Settings(clickhouse=f"chdb://{tmp_path}/ch?database=cut"))
    try:
        store.execute(schema.CREATE_VERSIONS_TABLE_SQL)
        done = [(v, n, sql) for v, n, sql in schema.migrations() if v < 4]
        for version, name, sql in done:
            for statement in schema.statements(sql):
                store.execute(statement)
            store.insert(
                schema.VERSIONS_TABLE, ("version", "name", "applied_at"), [(version, name, AT)]
            )
        # As if killed after the first statements of migration 4, before it was recorded.
        cut = schema.statements({v: sql for v, _, sql in schema.migrations()}[4])[:2]
        for statement in cut:
            store.execute(statement)
        later = [name for version, name, _ in schema.migrations() if version > 4]
        assert schema.migrate(store) == ["0004_cohorts_grades.sql", *later]
        columns = {str(r[0]) for r in store.execute("DESCRIBE TABLE ledger_events")}
        assert {"cohort_id", "members", "term", "term_end", "score"} <= columns
    finally:
        store.close()


class RacedStore:
    """A projection store on which another process adds the column between our check and our
    ALTER (what `serve --workers 3` does at startup)."""

    def __init__(self) -> None:
        self.columns = ["position"]

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if sql.startswith("DESCRIBE"):
            return [(c, "String") for c in self.columns]
        self.columns.append("score")  # the other process wins the race
        raise RuntimeError("Cannot add column score: column with this name already exists")


def test_processes_racing_on_one_migration_all_succeed() -> None:
    from tutorledger.projections.schema import apply

    store = RacedStore()
    apply(store, "ALTER TABLE ledger_events ADD COLUMN score Float64")  # type: ignore[arg-type]
    assert store.columns == ["position", "score"]
    with pytest.raises(RuntimeError):
        apply(store, "CREATE TABLE t (a UInt8) ENGINE = Memory")  # type: ignore[arg-type]
