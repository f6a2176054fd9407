"""The district page's grouped queries on ClickHouse 18.16 and chdb: the same figures on
both, each row equal to the participation (or demand) answer for that row's narrower filter,
withheld cells included; on the server the page's figures run on worker threads."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import Any

from metric_events import TZ, district

from tutorledger.api.dashboard import views
from tutorledger.api.metrics.registry import DEMAND, PARTICIPATION
from tutorledger.api.metrics.scope import Scope
from tutorledger.bench.metrics_latency import load
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.filters import Filters
from tutorledger.projections.rows import event_row
from tutorledger.projections.writer import ReadModelWriter, RequestCache

D = "ch-dash"
VIEWS: list[dict[str, Any]] = [
    {},
    {"grade": 4},
    {"date_from": date(2026, 10, 26), "date_to": date(2026, 11, 3)},
    {"school_id": "sch-02", "subject": "algebra"},
]


def school_events(first: int) -> list[tuple[Any, ...]]:
    """Each school's enrolment, and a later update of one school inside the range (so the
    enrolment at a week's end changes mid-view)."""
    updates = [(f"sch-{i:02d}", "2026-10-05", 40 + i) for i in range(1, 5)]
    updates.append(("sch-02", "2026-10-27", 90))
    rows = []
    for n, (school, as_of, per_grade) in enumerate(updates):
        event = {
            "event_id": f"school-{n}", "type": "school.updated", "district_id": D,
            "school_id": school, "occurred_at": "2026-10-05T12:00:00Z",
            "payload": {"school_id": school, "name": f"School {school[-1]}", "as_of": as_of,
                        "enrollment": {str(g): per_grade for g in range(13)}},
        }  # fmt: skip
        rows.append(event_row(first + n, event))
    return rows


def loaded(url: str) -> tuple[ProjectionStore, int]:
    store = open_projection_store(Settings(clickhouse=url))
    head = load(store, district(D).events, block=5000)
    rows = school_events(head + 1)
    ReadModelWriter(store, RequestCache(size=10_000)).write(rows)
    return store, head + len(rows)


def scope_of(head: int, role: str, **f: Any) -> Scope:
    profile = Settings().district(D)
    return Scope(Filters(D, head, TZ, **f), "head", profile, False, role)


def figures(store: ProjectionStore, scope: Scope) -> dict[str, Any]:
    page = views.district_view(store, scope)
    out = {
        "schools": page.reach_by_school.model,
        "weeks": page.reach_trend.model,
        "months": page.use_by_month.model,
        "tiles": [(t.key, t.value, t.previous) for t in page.tiles],
    }
    if scope.filters.school_id and scope.filters.subject:
        out["grades"] = views.drill_grades(store, scope)
    return json.loads(json.dumps(
        {k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v for k, v in out.items()},
        default=str,
    ))  # fmt: skip


def check_rows(store: ProjectionStore, scope: Scope, got: dict[str, Any]) -> None:
    """Every row of a grouped table is the API's answer for its own filter."""

    def answer(**changes: Any) -> dict[str, Any]:
        at = replace(scope, filters=replace(scope.filters, **changes))
        body: dict[str, Any] = views.answer(store, at, PARTICIPATION).model_dump()
        return body

    for row in got["schools"]["rows"]:
        expected = answer(school_id=row["school_id"])
        assert {k: row[k] for k in ("enrolled", "students_served", "reach_rate")} == {
            k: expected[k] for k in ("enrolled", "students_served", "reach_rate")
        }, row
    for row in got["weeks"]["rows"]:
        expected = answer(date_to=date.fromisoformat(row["through"]))
        assert (row["enrolled"], row["students_served"]) == (
            expected["enrolled"], expected["students_served"]), row  # fmt: skip
    for row in got["months"]["rows"]:
        expected = answer(date_from=date.fromisoformat(row["from_date"]),
                          date_to=date.fromisoformat(row["to_date"]))  # fmt: skip
        assert (row["students_served"], row["sessions_completed"]) == (
            expected["students_served"], expected["sessions_completed"]), row  # fmt: skip
    for row in got.get("grades", {}).get("rows", []):
        at = replace(scope, filters=replace(scope.filters, grade=row["grade"]))
        found = views.answer(store, at, DEMAND).model_dump()["rows"]
        assert row["requests"] == (found[0]["requests"] if found else None), row


def test_grouped_figures_identical_on_clickhouse_18_and_chdb_and_equal_the_api(
    chdb_url: str, clickhouse_url: str
) -> None:
    results: dict[str, list[dict[str, Any]]] = {}
    for url in (chdb_url, clickhouse_url):
        store, head = loaded(url)
        try:
            results[store.kind] = []
            for role in ("dashboard", "auditor"):
                for f in VIEWS:
                    scope = scope_of(head, role, **f)
                    got = figures(store, scope)
                    check_rows(store, scope, got)
                    results[store.kind].append(got)
        finally:
            store.close()
    assert results["chdb"] == results["clickhouse"]
    enrolled = {r["through"]: r["enrolled"] for r in results["chdb"][0]["weeks"]["rows"]}
    assert enrolled["2026-10-25"] < enrolled["2026-11-01"], "an update mid-view moves `enrolled`"
