"""The performance suite behind `tutorledger bench`: each stage beside a raw baseline, same run.

Machines here are noisy, so absolute rates drift; the ratio to the baseline measured
seconds earlier on the same machine is the number to compare across runs. The stages live
in their own modules and share `bench.common`; this module only runs them in order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tutorledger.bench.common import Stage, timed
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.bench.metrics_latency import run
from tutorledger.bench.migration import bench_migration
from tutorledger.bench.stream import bench_stream
from tutorledger.bench.write_path import write_path_stages
from tutorledger.consumers.projector import decode
from tutorledger.consumers.rebuild import rebuild
from tutorledger.infra.clickhouse import ChdbStore
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings
from tutorledger.projections.rows import COLUMNS, event_row
from tutorledger.projections.schema import migrate

SIZES = {"small": 5_000, "medium": 100_000, "large": 1_000_000}


def district_events(size: int) -> list[dict[str, Any]]:
    """About `size` distinct, valid events from the synthetic district generator."""
    students = max(50, size // 12)
    events = generate(DistrictSpec(students=students, days=28, duplicate_rate=0.0)).events
    return events[:size]


def bench_rebuild(store_url: str, label: str) -> Stage:
    """`rebuild` of the whole ledger into fresh projections vs inserting the same rows."""
    ledger = open_ledger(Settings(event_store=store_url))
    with tempfile.TemporaryDirectory() as chdir:
        store = ChdbStore(chdir, "rebuild")
        migrate(store)
        report = rebuild(ledger, store, batch_size=20_000)
        notes = ledger.recorder.select_notifications(start=1, limit=10**9)
        rows = [event_row(n.id, decode(ledger, n)) for n in notes]
        store.execute("CREATE TABLE raw_rows AS ledger_events")

        def insert_rows() -> None:
            for i in range(0, len(rows), 20_000):
                store.insert("raw_rows", COLUMNS, rows[i : i + 20_000])

        baseline = timed(insert_rows)
        store.close()
    ledger.close()
    return Stage(
        f"rebuild ({label} → chdb)", report.events, report.seconds, "bare chdb inserts", baseline
    )


def bench_dashboard(size: int, clickhouse: str | None) -> list[Stage]:
    """Every metric over HTTP on a streamed district of `size` events (bench.metrics_latency):
    the whole-range p50/p95 per metric, beside the count() floor, in the report."""
    stages = []
    for url in (None, clickhouse) if clickhouse else (None,):
        found = run(size, repeats=10, clickhouse=url)
        whole = found["http"]["whole range"]
        backend = found["backend"]
        for metric, timing in whole.items():
            extra = {**timing, "floor_count_p95_ms": found["floor_count"]["whole range"]["p95_ms"]}
            seconds = timing["p50_ms"] / 1000
            stages.append(Stage(f"dashboard {metric} ({backend}, HTTP)", found["events"],
                                seconds, extra=extra))  # fmt: skip
        rss = found["serve_rss_mib"]
        stages.append(Stage(f"serve RSS MiB ({backend})", found["events"], 1.0, extra=rss))
    return stages


def run_suite(size: str, workdir: Path, postgres: str | None, kafka: str | None,
              clickhouse: str | None) -> list[dict[str, Any]]:  # fmt: skip
    events = district_events(SIZES[size])
    sqlite_url = f"sqlite:///{workdir}/ledger.db"
    stages: list[Stage] = write_path_stages(events, workdir, sqlite_url, postgres)
    stages.append(bench_rebuild(sqlite_url, "SQLite"))
    if postgres:
        stages.append(bench_rebuild(postgres, "PostgreSQL"))
    stages.append(bench_migration(SIZES[size], workdir))
    stages.extend(bench_dashboard(SIZES[size], clickhouse))
    from tutorledger.bench.district_page import suite_stages

    stages.extend(Stage(**stage) for stage in suite_stages(size))
    if kafka and clickhouse:
        stages.extend(bench_stream(sqlite_url, kafka, clickhouse, size, workdir))
    return [s.as_dict() for s in stages]
