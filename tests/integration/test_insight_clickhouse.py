"""Cohort-restricted metrics and usage-vs-grades outcomes give identical figures on ClickHouse
18.16 and chdb 26, equal to the independent reference: membership as of two positions, and
grades with a built-in association, all projected through the projectors' writer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import grade_events as ge
import reference_metrics as ref
from metric_events import TZ, district

from tutorledger.bench.metrics_latency import published
from tutorledger.domain.cohort import cohort_envelope
from tutorledger.domain.envelope import parse_envelope
from tutorledger.domain.grades import Grade, grade_envelope
from tutorledger.domain.published import parse_published
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.demand import demand
from tutorledger.projections.engagement import engagement
from tutorledger.projections.filters import Filters
from tutorledger.projections.outcomes import outcomes
from tutorledger.projections.participation import participation
from tutorledger.projections.rows import event_row
from tutorledger.projections.schema import migrate
from tutorledger.projections.wait_times import wait_times
from tutorledger.projections.writer import ReadModelWriter

GEN, GRADED = "ci-gen", "ci-graded"
AT = datetime(2026, 12, 1, tzinfo=UTC)


def _rows(gen: list[dict[str, Any]], g: ge.GradedDistrict) -> tuple[list[Any], dict[str, Any]]:
    """Event rows as the projectors write them (tokens, published form) and what they mean."""
    tokens: dict[str, str] = {}
    rows: list[Any] = []

    def add(event: dict[str, Any]) -> int:
        rows.append(event_row(len(rows) + 1, parse_published(event)))
        return len(rows)

    for raw in gen + g.events:
        add(published(parse_envelope(raw).canonical(), tokens))
    everyone = sorted({e["payload"]["student_id"] for e in gen if e["type"] == "session.requested"})
    first, second = set(everyone[::3]), set(everyone[1::4])
    p1 = add(cohort_envelope(GEN, "focus", "Focus", [tokens[s] for s in first], AT))
    p2 = add(cohort_envelope(GEN, "focus", "Focus", [tokens[s] for s in second], AT))
    for r in g.rows:
        score = ge.LETTERS.get(r["grade"].upper()) or float(r["grade"])
        grade = Grade(r["student"], r["subject"].lower(), r["term"], ge.GRADED[r["term"]], score)
        add(grade_envelope(GRADED, tokens[r["student"]], grade, AT))
    half = sorted(g.grades)[::2]
    p3 = add(cohort_envelope(GRADED, "half", "Half", [tokens[s] for s in half], AT))
    return rows, {"first": (first, p1), "second": (second, p2), "half": (set(half), p3)}


def _figures(
    store: ProjectionStore, meaning: dict[str, Any], gen: list[Any]
) -> list[tuple[str, Any, Any]]:
    """(label, figure from the store, reference) for each cohort case and the outcomes."""
    cases = []
    for name in ("first", "second"):
        members, position = meaning[name]
        f = Filters(GEN, position, TZ, generation=1, cohort_id="focus")
        mine = ref.in_cohort(gen, members)
        cases.append(
            (
                f"{name} wait",
                wait_times(store, f, ("school_id",)),
                ref.wait_times(mine, GEN, TZ, ("school",)),
            )
        )
        cases.append(
            (
                f"{name} demand",
                demand(store, f, ("school_id", "subject")),
                ref.demand(mine, GEN, TZ, ("school", "subject")),
            )
        )
        cases.append((f"{name} engagement", engagement(store, f), ref.engagement(mine, GEN, TZ)))
        served = participation(store, f)
        requests = [e["payload"] for e in mine if e["type"] == "session.requested"]
        expected = (len(members), len({r["student_id"] for r in requests}))
        cases.append(
            (f"{name} reach", (served["cohort_size"], served["students_served"]), expected)
        )
    return cases


def test_cohorts_and_outcomes_identical_on_clickhouse_18_and_chdb(
    chdb_url: str, clickhouse_url: str
) -> None:
    seen: set[str] = set()  # resends are stored once
    gen = [
        e
        for e in district(GEN, students=240).events
        if not (e["event_id"] in seen or seen.add(e["event_id"]))
    ]
    g = ge.generate(GRADED, students=96)
    rows, meaning = _rows(gen, g)
    half, position = meaning["half"]
    expected_outcomes = list(ref.outcome_bands(g.grades, g.used).values())
    expected_half = list(ref.outcome_bands({s: g.grades[s] for s in half}, g.used).values())
    results = {}
    for url in (chdb_url, clickhouse_url):
        store = open_projection_store(Settings(clickhouse=url))
        try:
            migrate(store)
            ReadModelWriter(store).write(rows)
            cases = _figures(store, meaning, gen)
            whole = Filters(GRADED, position, TZ, generation=1, subject="algebra")
            cases.append(
                (
                    "outcomes",
                    outcomes(store, whole, ge.TERM_FROM, ge.TERM_TO)["rows"],
                    expected_outcomes,
                )
            )
            cohort = Filters(
                GRADED, position, TZ, generation=1, subject="algebra", cohort_id="half"
            )
            cases.append(
                (
                    "cohort outcomes",
                    outcomes(store, cohort, ge.TERM_FROM, ge.TERM_TO)["rows"],
                    expected_half,
                )
            )
            results[store.kind] = cases
        finally:
            store.close()
    for (label, a, expected), (_, b, _) in zip(results["chdb"], results["clickhouse"], strict=True):
        plain = json.loads(json.dumps(a, default=str))
        assert plain == json.loads(json.dumps(b, default=str)), label
        assert plain == json.loads(json.dumps(expected, default=str)), label
