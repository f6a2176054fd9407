"""Latency of the roster-group figures on a large district (in-process).

Streams a district of about `--size` events into the read models through the projectors'
writer, then records roster groups as an import would (`roster.all` = every student who
asked for help; English learners one in eight, economically disadvantaged one in two,
special education one in seven, foster one in two hundred, female one in two). Each query
is timed `--repeats` times (nearest-rank p50/p95, ms) beside, in the same run, the
`count()` of the request rows it reads. Run: `python -m tutorledger.bench.groups_latency
--size 2000000 [--clickhouse URL]`.
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
from tutorledger.domain.alert_rules import AlertRules
from tutorledger.domain.cohort import cohort_envelope
from tutorledger.domain.district import SchoolHours
from tutorledger.domain.dosage_standard import DosageStandard
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.alerts import equity_gap
from tutorledger.projections.dosage_standard import met_students_sql
from tutorledger.projections.engagement import engagement
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.groups import STUDENT_GROUP
from tutorledger.projections.participation import participation
from tutorledger.projections.rows import event_row
from tutorledger.projections.schema import migrate
from tutorledger.projections.steps import REQUESTED
from tutorledger.projections.student_groups import equity_gaps
from tutorledger.projections.wait_times import wait_times
from tutorledger.projections.writer import ReadModelWriter, RequestCache

EVERY = {"ell": 8, "econ_disadv": 2, "sped": 7, "foster": 200, "female": 2}


def load(store: ProjectionStore, spec: StreamSpec, block: int = 100_000) -> int:
    """Sessions, then the roster groups, through the writer; returns the last position."""
    migrate(store)
    writer = ReadModelWriter(store, RequestCache(size=300_000))
    tokens: dict[str, str] = {}
    rows: list[tuple[Any, ...]] = []
    position = 0
    for event in stream(spec):
        position += 1
        rows.append(event_row(position, published(event, tokens)))
        if len(rows) >= block:
            writer.write(rows, dedupe=False)
            rows = []
    at = datetime.now(UTC)
    everyone = sorted(tokens.values())
    groups = {"all": everyone} | {
        code: [t for i, t in enumerate(everyone) if i % step == 0] for code, step in EVERY.items()
    }
    for code, members in groups.items():
        position += 1
        envelope = cohort_envelope(spec.district_id, f"roster.{code}", code, members, at)
        rows.append(event_row(position, envelope))
    writer.write(rows, dedupe=False)
    return position


RULES = (DosageStandard(), SchoolHours())  # the defaults, as a district without its own


def queries(store: ProjectionStore, spec: StreamSpec, head: int) -> dict[str, Callable[[], Any]]:
    whole = Filters(spec.district_id, head, spec.tz, generation=1)
    month = replace(
        whole,
        date_from=spec.start + timedelta(days=60),
        date_to=spec.start + timedelta(days=89),
    )
    ell = replace(whole, group="ell")
    scan = f"SELECT count() FROM session_facts_g1 WHERE {facts_where(whole, (REQUESTED,))}"
    last = spec.start + timedelta(days=spec.days - 1)
    return {
        "floor: count() of the requests": partial(store.execute, scan, whole.params()),
        "equity-gaps": partial(equity_gaps, store, whole, met_students_sql(store, whole, *RULES)),
        "equity-gaps, one month": partial(
            equity_gaps, store, month, met_students_sql(store, month, *RULES)
        ),
        "participation, group=ell": partial(participation, store, ell),
        "engagement, group=ell": partial(engagement, store, ell),
        "wait-times, group_by=group": partial(wait_times, store, whole, (STUDENT_GROUP,)),
        "equity_gap alert": partial(equity_gap, store, whole, last, AlertRules()),
    }


def run(size: int, repeats: int, clickhouse: str | None) -> dict[str, Any]:
    spec = spec_for(size)
    with tempfile.TemporaryDirectory(prefix="tl-groups-") as tmp:
        url = clickhouse or f"chdb://{tmp}/chdb?database=bench_groups"
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
        "students": spec.students,
        "load_seconds": loaded,
        "repeats": repeats,
        "ms": timings,
    }


def main() -> None:
    latency_main(__doc__, run)


if __name__ == "__main__":
    main()
