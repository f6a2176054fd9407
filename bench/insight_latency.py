"""Latency of the cohort filter and the outcomes figure on a large district (in-process).

Streams a district of about `--size` events into the read models through the projectors'
writer, then records what an import and an admin would: two terms of grades in the hotspot
subject for every student who asked for help (the grading dates a school term apart) and a
priority cohort of one student in ten. Each query is timed `--repeats` times (nearest-rank
p50/p95, ms) beside, in the same run, the `count()` of the session rows it reads, so the
ratio says what the figure costs over the bare scan. Run: `python -m
tutorledger.bench.insight_latency --size 1000000 [--clickhouse URL]`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from tutorledger.bench.metrics_latency import latency_main, published, timed_ms
from tutorledger.bench.stream_district import StreamSpec, spec_for, stream
from tutorledger.domain.cohort import cohort_envelope
from tutorledger.domain.grades import Grade, grade_envelope
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.outcomes import outcomes
from tutorledger.projections.participation import participation
from tutorledger.projections.rows import event_row
from tutorledger.projections.schema import migrate
from tutorledger.projections.steps import COMPLETED
from tutorledger.projections.wait_times import wait_times
from tutorledger.projections.writer import ReadModelWriter, RequestCache

SUBJECT = "geometry"
TERMS = ("term-1", "term-2")


def load(store: ProjectionStore, spec: StreamSpec, block: int = 100_000) -> int:
    """Sessions, then grades and one cohort, through the writer; returns the last position."""
    migrate(store)
    writer = ReadModelWriter(store, RequestCache(size=300_000))
    tokens: dict[str, str] = {}
    rows: list[tuple[Any, ...]] = []
    position = 0

    def add(event: dict[str, Any]) -> None:
        nonlocal position, rows
        position += 1
        rows.append(event_row(position, event))
        if len(rows) >= block:
            writer.write(rows, dedupe=False)
            rows = []

    for event in stream(spec):
        add(published(event, tokens))
    at = datetime.now(UTC)
    first = spec.start + timedelta(days=90)
    for i, (student, token) in enumerate(sorted(tokens.items())):
        for term, end, score in (
            (TERMS[0], first, 60 + i % 30),
            (TERMS[1], first + timedelta(days=90), 62 + i % 31),
        ):
            add(
                grade_envelope(
                    spec.district_id, token, Grade(student, SUBJECT, term, end, score), at
                )
            )
    members = [t for i, t in enumerate(sorted(tokens.values())) if i % 10 == 0]
    add(cohort_envelope(spec.district_id, "priority", "Priority", members, at))
    writer.write(rows, dedupe=False)
    return position


def queries(store: ProjectionStore, spec: StreamSpec, head: int) -> dict[str, Callable[[], Any]]:
    whole = Filters(spec.district_id, head, spec.tz, generation=1)
    cohort = Filters(spec.district_id, head, spec.tz, generation=1, cohort_id="priority")
    graded = Filters(spec.district_id, head, spec.tz, generation=1, subject=SUBJECT)
    graded_cohort = replace(graded, cohort_id="priority")
    scan = f"SELECT count() FROM session_facts_g1 WHERE {facts_where(graded, (COMPLETED,))}"
    return {
        "floor: count() of the subject's completed steps": partial(
            store.execute, scan, graded.params()
        ),
        "participation": partial(participation, store, whole),
        "participation, cohort_id": partial(participation, store, cohort),
        "wait-times by school, cohort_id": partial(wait_times, store, cohort, ("school_id",)),
        "outcomes": partial(outcomes, store, graded, *TERMS),
        "outcomes, cohort_id": partial(outcomes, store, graded_cohort, *TERMS),
    }


def run(size: int, repeats: int, clickhouse: str | None) -> dict[str, Any]:
    spec = spec_for(size)
    with tempfile.TemporaryDirectory(prefix="tl-insight-") as tmp:
        url = clickhouse or f"chdb://{tmp}/chdb?database=bench_insight"
        store = open_projection_store(Settings(clickhouse=url))
        try:
            started = time.perf_counter()
            head = load(store, spec)
            loaded = round(time.perf_counter() - started, 1)
            timings = {
                name: timed_ms(work, repeats) for name, work in queries(store, spec, head).items()
            }
            backend = store.kind
        finally:
            store.close()
    return {
        "backend": backend,
        "events": head,
        "load_seconds": loaded,
        "repeats": repeats,
        "ms": timings,
    }


def main() -> None:
    latency_main(__doc__, run)


if __name__ == "__main__":
    main()
