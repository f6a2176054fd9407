"""Dashboard query latency: p50/p95 of every metric over a generated district in chdb.

Rows go straight into `ledger_events` through the projector's own mapping, in big blocks,
so the run measures the queries and not the write path.

    python -m tutorledger.bench.metrics_latency --size 1000000 [--repeats 20] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.domain.district import SchoolHours
from tutorledger.domain.envelope import parse_envelope
from tutorledger.infra.clickhouse import ChdbStore, ProjectionStore
from tutorledger.projections.demand import demand
from tutorledger.projections.engagement import engagement
from tutorledger.projections.filters import Filters, filtered_sessions_sql
from tutorledger.projections.participation import participation
from tutorledger.projections.rows import event_row
from tutorledger.projections.satisfaction import satisfaction
from tutorledger.projections.schema import migrate
from tutorledger.projections.timing import timing
from tutorledger.projections.wait_times import wait_times
from tutorledger.projections.writer import ReadModelWriter, RequestCache

EVENTS_PER_STUDENT = 12.4  # measured on generate(): sessions per student × events per session
Metric = Callable[[ProjectionStore, Filters], Any]

# The raw baseline each figure is compared with: fold the district's events into sessions.
FOLD_SQL = f"SELECT count() FROM ({filtered_sessions_sql()})"

METRICS: dict[str, Metric] = {
    "baseline: session fold": lambda s, f: s.execute(FOLD_SQL, f.params()),
    "participation": participation,
    "demand": lambda s, f: demand(s, f, ("school_id", "subject")),
    "wait-times": lambda s, f: wait_times(s, f, ("school_id",)),
    "satisfaction": lambda s, f: satisfaction(s, f, ()),
    "timing": lambda s, f: timing(s, f, SchoolHours()),
    "engagement": engagement,
}


def spec_for(size: int) -> DistrictSpec:
    """A district of about `size` events: a school year's days, students scaled to fit."""
    students = max(50, round(size / EVENTS_PER_STUDENT))
    return DistrictSpec(district_id="bench-d", schools=68, students=students, days=180)


def ledger_rows(events: Iterable[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    """Rows as the projector writes them: canonical (UTC) events, duplicates dropped, numbered."""
    seen: set[str] = set()
    position = 0
    for raw in events:
        if raw["event_id"] in seen:
            continue
        seen.add(raw["event_id"])
        position += 1
        yield event_row(position, parse_envelope(raw).canonical())


def load(store: ProjectionStore, events: Iterable[dict[str, Any]], block: int = 200_000) -> int:
    """Project valid events in blocks at positions 1, 2, … through the projectors' writer
    (raw rows and read models); returns the last position."""
    migrate(store)
    writer = ReadModelWriter(store, RequestCache(size=1_000_000))
    rows: list[tuple[Any, ...]] = []
    last = 0
    for row in ledger_rows(events):
        rows.append(row)
        last = row[0]
        if len(rows) >= block:
            writer.write(rows)
            rows = []
    writer.write(rows)
    return last


def percentile(values: list[float], percent: int) -> float:
    """Nearest rank, as the metrics themselves define percentiles."""
    ordered = sorted(values)
    return ordered[max(1, (percent * len(ordered) + 99) // 100) - 1]


def time_metrics(store: ProjectionStore, filters: Filters, repeats: int) -> dict[str, Any]:
    """Run each metric `repeats` times (after one warm-up); p50/p95 milliseconds."""
    report = {}
    for name, metric in METRICS.items():
        metric(store, filters)
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            metric(store, filters)
            samples.append((time.perf_counter() - started) * 1000)
        report[name] = {
            "p50_ms": round(percentile(samples, 50), 1),
            "p95_ms": round(percentile(samples, 95), 1),
        }
    return report


def run(size: int, repeats: int = 20, data_dir: Path | None = None) -> dict[str, Any]:
    """Generate, load and time; the report names what was measured."""
    spec = spec_for(size)
    started = time.perf_counter()
    district = generate(spec)
    with tempfile.TemporaryDirectory(prefix="tl-metrics-") as tmp:
        store = ChdbStore(str(data_dir or Path(tmp)), "bench_metrics")
        try:
            store.execute("DROP TABLE IF EXISTS ledger_events")
            store.execute("DROP TABLE IF EXISTS schema_migrations")
            loaded = time.perf_counter()
            head = load(store, district.events)
            load_seconds = time.perf_counter() - loaded
            whole = Filters(spec.district_id, head, spec.tz)
            month = Filters(
                spec.district_id, head, spec.tz,
                date_from=spec.start, date_to=spec.start + timedelta(days=29),
            )  # fmt: skip
            report = {
                "events": head,
                "students": spec.students,
                "setup_seconds": round(loaded - started, 1),
                "load_seconds": round(load_seconds, 1),
                "repeats": repeats,
                "whole_range": time_metrics(store, whole, repeats),
                "one_month": time_metrics(store, month, repeats),
            }
        finally:
            store.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    sys.stdout.write(json.dumps(run(args.size, args.repeats, args.dir), indent=2) + "\n")


if __name__ == "__main__":
    main()
