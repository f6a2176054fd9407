"""The dosage standard gives identical figures on ClickHouse 18.16 and chdb, equal to the
independent fold: its SQL (day-number arrays, arrayCount over them, the cohort join) is
portable, the DST change and a break week included; grouped by roster group and by provider
(the roster members' join, the request's provider), each row equals the figures filtered to
its values, on both."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import group_by_events as gen
import reference_standard as fold
from metric_events import TZ, district

from tutorledger.bench.metrics_latency import load
from tutorledger.domain.district import SchoolHours
from tutorledger.domain.dosage_standard import Break, DosageStandard
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.dosage_standard import dosage_standard, falling_short
from tutorledger.projections.filters import Filters
from tutorledger.projections.read_models import FACT_COLUMNS, Tables, current_tables
from tutorledger.projections.schema import migrate
from tutorledger.projections.steps import COMPLETED
from tutorledger.projections.writer import ReadModelWriter

D = "ch-std"
HOURS = SchoolHours()
BREAK = (date(2026, 10, 26), date(2026, 10, 27))  # two school days off: the week still counts
STANDARD = DosageStandard(
    sessions_per_week=1, session_minutes=20, weeks=2, breaks=(Break(start=BREAK[0], end=BREAK[1]),)
)
RULE = fold.Rule(per_week=1, minutes=20, weeks=2, breaks=(BREAK,))
FILTERS: list[dict[str, Any]] = [
    {},
    {"school_id": "sch-02"},
    {"date_from": date(2026, 10, 19), "date_to": date(2026, 11, 2)},  # across the DST change
]
GROUPINGS = {(): (), ("school",): ("school_id",), ("school", "grade"): ("school_id", "grade")}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _add_cohort(store: ProjectionStore, head: int) -> int:
    """A cohort of every third student (by their first session id: tokens, hence keys,
    differ from one load to the next), recorded after the sessions."""
    keys = [
        int(r[0])
        for r in store.execute(
            "SELECT student_key FROM session_facts_g1 WHERE district_id = %(d)s "
            "GROUP BY student_key ORDER BY min(session_id)",
            {"d": D},
        )
    ]
    store.insert(
        "cohort_updates_g1",
        ("district_id", "cohort_id", "position", "cohort_name", "members"),
        [(D, "c-third", head + 1, "third", keys[::3])],
    )
    return head + 1


def _answers(store: ProjectionStore, head: int) -> list[Any]:
    out = []
    for f in FILTERS:
        for keys in GROUPINGS.values():
            out.append(dosage_standard(store, Filters(D, head, TZ, **f), STANDARD, HOURS, keys))
    out.append(dosage_standard(store, Filters(D, head, TZ), STANDARD, HOURS, ("cohort_id",)))
    pinned = Filters(D, head, TZ, generation=1, cohort_id="c-third")
    out.append(dosage_standard(store, pinned, STANDARD, HOURS, ()))
    out.append(falling_short(store, Filters(D, head, TZ), STANDARD, HOURS)[1])
    return out


def test_standard_identical_on_clickhouse_18_and_chdb_and_equal_fold(
    chdb_url: str, clickhouse_url: str
) -> None:
    events = district(D).events
    results, versions = {}, {}
    for url in (chdb_url, clickhouse_url):
        store = open_projection_store(Settings(clickhouse=url))
        try:
            head = _add_cohort(store, load(store, events, block=5000))
            versions[store.kind] = str(store.execute("SELECT version()")[0][0])
            results[store.kind] = _plain(_answers(store, head))
        finally:
            store.close()
    assert versions["clickhouse"].startswith("18.16")
    for i, (a, b) in enumerate(zip(results["chdb"], results["clickhouse"], strict=True)):
        assert a == b, i
    answers = iter(results["chdb"])
    for f in FILTERS:
        for names in GROUPINGS:
            got = next(answers)
            expected = fold.standard(events, D, TZ, RULE, names, **f)
            assert got["rows"] == _plain(expected["rows"]), (f, names)
            assert got["weeks"] == _plain(expected["weeks"]), f
            assert got["counted_weeks"] == expected["counted_weeks"]
    by_cohort, filtered, short = next(answers), next(answers), next(answers)
    (row,) = by_cohort["rows"]
    assert row["cohort_id"] == "c-third" and 0 < row["students"]
    assert {k: row[k] for k in ("students", "met", "on_track", "short")} == {
        k: filtered["rows"][0][k] for k in ("students", "met", "on_track", "short")
    }
    expected_short = fold.short_students(events, D, TZ, RULE).values()
    found = [(s["met_weeks"], s["counted_weeks"], s["sessions_completed"]) for s in short]
    assert sorted(found) == sorted(expected_short) and found


GD = "ch-std-groups"
BY = [("student_group",), ("provider",), ("school_id", "student_group"),
      ("student_group", "provider")]  # fmt: skip
FILTER_OF = {"school_id": "school_id", "student_group": "group", "provider": "provider"}
STATUSES = ("students", "met", "on_track", "short")


def _grouped(store: ProjectionStore, position: int) -> list[Any]:
    """Per grouping: its rows, and per row (but provider '') the figures filtered to it."""
    out: list[Any] = []
    for keys in BY:
        filters = Filters(GD, position, TZ, generation=1)
        rows = dosage_standard(store, filters, STANDARD, HOURS, keys)["rows"]
        only = []
        for row in rows:
            if row["provider"] == "":
                continue  # '' (no provider) cannot be asked as a filter
            f = Filters(GD, position, TZ, generation=1, **{FILTER_OF[k]: row[k] for k in keys})
            only.append((row, dosage_standard(store, f, STANDARD, HOURS, ())["rows"]))
        out.append((keys, rows, only))
    return out


def test_by_roster_group_and_provider_identical_on_clickhouse_18_and_chdb(
    chdb_url: str, clickhouse_url: str
) -> None:
    events = gen.events(GD)
    groups = gen.roster(events)
    rows = gen.rows(GD, events, groups)
    results, versions = {}, {}
    for url in (chdb_url, clickhouse_url):
        store = open_projection_store(Settings(clickhouse=url))
        try:
            migrate(store)
            ReadModelWriter(store).write(rows)
            versions[store.kind] = str(store.execute("SELECT version()")[0][0])
            results[store.kind] = _plain(_grouped(store, len(rows)))
        finally:
            store.close()
    assert versions["clickhouse"].startswith("18.16")
    assert results["chdb"] == results["clickhouse"]
    for keys, found, only in results["chdb"]:
        if "student_group" in keys:  # every group, never roster.all
            assert {r["student_group"] for r in found} == set(groups), keys
        if "provider" in keys:
            assert {r["provider"] for r in found} == set(gen.PROVIDERS), keys
        assert len(only) >= 2, keys
        for row, filtered in only:
            counts = [row[k] for k in STATUSES]
            assert [[r[k] for k in STATUSES] for r in filtered] == [counts], (keys, row)


def test_groups_of_completions_projected_before_matched_us_existed(
    projections: ProjectionStore,
) -> None:
    """Completions without their wait to the match (-1 in `matched_us`, an older release's)
    are read grouped by session, the provider among their columns: every grouping by roster
    group or provider answers the same as on the filled facts."""
    events = gen.events(GD)
    ReadModelWriter(projections).write(gen.rows(GD, events, gen.roster(events)))
    live, legacy = current_tables(projections), Tables(7)
    for table in ("facts", "cohorts"):
        projections.execute(f"CREATE TABLE {getattr(legacy, table)} AS {getattr(live, table)}")
    old = [f"if(step = {COMPLETED}, -1, matched_us)" if c == "matched_us" else c
           for c in FACT_COLUMNS]  # fmt: skip
    projections.execute(f"INSERT INTO {legacy.facts} ({', '.join(FACT_COLUMNS)}) "
                        f"SELECT {', '.join(old)} FROM {live.facts}")  # fmt: skip
    projections.execute(f"INSERT INTO {legacy.cohorts} SELECT * FROM {live.cohorts}")
    for keys in BY:
        new, pinned = (
            dosage_standard(projections, Filters(GD, 10**9, TZ, generation=g), STANDARD, HOURS,
                            keys)["rows"]
            for g in (1, 7)
        )  # fmt: skip
        assert new == pinned and new, keys
