"""`group_by` on participation, timing, engagement and dosage gives identical figures on
ClickHouse 18.16 and chdb, equal to the independent reference fold: by school, subject,
provider, school × provider, roster group, and roster group × provider; dosage's also over
completions projected before `matched_us` existed."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import group_by_events as gen
import reference_metrics as ref
from metric_events import TZ

from tutorledger.domain.district import SchoolHours
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.filters import Filters
from tutorledger.projections.grouped_figures import (
    dosage_groups,
    engagement_groups,
    participation_groups,
    timing_groups,
)
from tutorledger.projections.read_models import FACT_COLUMNS, Tables, current_tables
from tutorledger.projections.schema import migrate
from tutorledger.projections.steps import COMPLETED
from tutorledger.projections.writer import ReadModelWriter

D = "gb-int"
GROUPINGS = [("school",), ("subject",), ("provider",), ("school", "provider"), ("group",),
             ("group", "provider")]  # fmt: skip
COLUMNS = {"school": "school_id", "subject": "subject", "group": "student_group",
           "provider": "provider"}  # fmt: skip
METRICS = {
    "participation": (participation_groups, ref.participation_groups),
    "timing": (None, ref.timing_groups),
    "engagement": (engagement_groups, ref.engagement_groups),
    "dosage": (dosage_groups, ref.dosage_groups),
}


def expected(metric: str, events: list[Any], groups: dict[str, set[str]], names: tuple[str, ...],
             **f: Any) -> list[dict[str, Any]]:  # fmt: skip
    fold = METRICS[metric][1]
    if "group" not in names:
        return fold(events, D, TZ, names, **f)
    rest = tuple(n for n in names if n != "group")
    out = []
    for code in sorted(groups):
        rows = fold(ref.in_cohort(events, groups[code]), D, TZ, rest, **f)
        out += [{**r, "student_group": code} for r in rows if rest or _any(metric, r)]
    return sorted(out, key=lambda r: tuple(r[COLUMNS[n]] or "" for n in names))


def _any(metric: str, row: dict[str, Any]) -> bool:
    return bool(row["sessions_completed" if metric == "dosage" else "requests"
                if metric in ("timing", "engagement") else "sessions_requested"])  # fmt: skip


def figures(store: ProjectionStore, position: int, groups: dict[str, set[str]],
            events: list[Any]) -> list[tuple[str, Any, Any]]:  # fmt: skip
    out = []
    hours = SchoolHours()
    for f in ({}, {"date_from": date(2026, 10, 20), "school_id": "sch-02"}):
        filters = Filters(D, position, TZ, generation=1, **f)
        for names in GROUPINGS:
            keys = tuple(COLUMNS[n] for n in names)
            for metric, (compute, _) in METRICS.items():
                if compute is None:
                    rows = timing_groups(store, filters, hours, keys)
                else:
                    rows = compute(store, filters, keys)
                out.append(
                    (f"{metric} {names} {f}", rows, expected(metric, events, groups, names, **f))
                )
    return out


def test_grouped_headlines_identical_on_clickhouse_18_and_chdb(
    chdb_url: str, clickhouse_url: str
) -> None:
    events = gen.events(D)
    groups = gen.roster(events)
    rows = gen.rows(D, events, groups)
    results = {}
    for url in (chdb_url, clickhouse_url):
        store = open_projection_store(Settings(clickhouse=url))
        try:
            migrate(store)
            ReadModelWriter(store).write(rows)
            results[store.kind] = figures(store, len(rows), groups, events)
        finally:
            store.close()
    assert len(results) == 2
    for (label, a, want), (_, b, _) in zip(results["chdb"], results["clickhouse"], strict=True):
        plain = json.loads(json.dumps(a, default=str))
        assert plain == json.loads(json.dumps(b, default=str)), label
        assert plain == json.loads(json.dumps(want, default=str)), label
        assert plain, label


def test_dosage_groups_of_completions_projected_before_matched_us_existed(
    projections: ProjectionStore,
) -> None:
    """Completions an older release wrote without their wait to the match (-1 in `matched_us`)
    are grouped with their matched facts by session, and every grouping answers the same."""
    events = gen.events(D)
    groups = gen.roster(events)
    ReadModelWriter(projections).write(gen.rows(D, events, groups))
    live, legacy = current_tables(projections), Tables(7)
    for table in ("facts", "cohorts"):
        projections.execute(f"CREATE TABLE {getattr(legacy, table)} AS {getattr(live, table)}")
    old = [f"if(step = {COMPLETED}, -1, matched_us)" if c == "matched_us" else c
           for c in FACT_COLUMNS]  # fmt: skip
    projections.execute(f"INSERT INTO {legacy.facts} ({', '.join(FACT_COLUMNS)}) "
                        f"SELECT {', '.join(old)} FROM {live.facts}")  # fmt: skip
    projections.execute(f"INSERT INTO {legacy.cohorts} SELECT * FROM {live.cohorts}")
    position = 10**9
    for names in GROUPINGS:
        keys = tuple(COLUMNS[n] for n in names)
        new = dosage_groups(projections, Filters(D, position, TZ, generation=1), keys)
        pinned = dosage_groups(projections, Filters(D, position, TZ, generation=7), keys)
        assert new == pinned and new, names
        assert new == expected("dosage", events, groups, names), names
