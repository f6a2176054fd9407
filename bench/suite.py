"""The performance suite behind `tutorledger bench`: each stage beside a raw baseline, same run.

Machines here are noisy, so absolute rates drift; the ratio to the baseline measured
seconds earlier on the same machine is the number to compare across runs.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from eventsourcing.domain import Aggregate, event

from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.infra.eventstore.store import open_ledger, store_env
from tutorledger.infra.settings import Settings

SIZES = {"small": 5_000, "medium": 100_000, "large": 1_000_000}
BATCH = 1000
T = TypeVar("T")


@dataclass
class Stage:
    name: str
    events: int
    seconds: float
    baseline: str = ""
    baseline_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        base_rate = self.events / self.baseline_seconds if self.baseline_seconds else None
        return {
            "stage": self.name,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate, 1),
            "baseline": self.baseline or None,
            "baseline_events_per_second": round(base_rate, 1) if base_rate else None,
            "ratio_to_baseline": round(self.rate / base_rate, 3) if base_rate else None,
            **self.extra,
        }


class RawEvent(Aggregate):
    """Baseline aggregate: one stored event per envelope, no rules, no index."""

    @event("Recorded")
    def __init__(self, envelope: dict[str, Any]) -> None:
        self.envelope = envelope


def district_events(size: int) -> list[dict[str, Any]]:
    """About `size` distinct, valid events from the synthetic district generator."""
    students = max(50, size // 12)
    events = generate(DistrictSpec(students=students, days=28, duplicate_rate=0.0)).events
    return events[:size]


def in_fresh_process(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` run (and timed, by `work` itself) in a new interpreter. Each side of a
    write-path ratio starts from a clean heap, as the CLI and the server do: run in this
    process after the other side, the second ran up to 15 % slower on the memory the first
    had just freed, whichever side it was."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(work, *args).result()


def timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def raw_env(store_url: str) -> dict[str, str]:
    """The library's own recorder on a separate file or schema: the baseline's own space."""
    ours = ("APPLICATION_RECORDER_TOPIC", "MAPPER_TOPIC")
    env = {k: v for k, v in store_env(store_url).items() if k not in ours}
    if "SQLITE_DBNAME" in env:
        env["SQLITE_DBNAME"] += ".raw"
        return env
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_raw")
    env["POSTGRES_SCHEMA"] = "bench_raw"
    return env


def bench_rebuild(store_url: str, label: str) -> Stage:
    """`rebuild` of the whole ledger into fresh projections vs inserting the same rows."""
    from tutorledger.consumers.projector import decode
    from tutorledger.consumers.rebuild import rebuild
    from tutorledger.infra.clickhouse import ChdbStore
    from tutorledger.projections.rows import COLUMNS, event_row
    from tutorledger.projections.schema import migrate

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
    from tutorledger.bench.metrics_latency import run

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
    from tutorledger.bench.write_path import write_path_stages

    stages: list[Stage] = write_path_stages(events, workdir, sqlite_url, postgres)
    stages.append(bench_rebuild(sqlite_url, "SQLite"))
    if postgres:
        stages.append(bench_rebuild(postgres, "PostgreSQL"))
    from tutorledger.bench.migration import bench_migration

    stages.append(bench_migration(SIZES[size], workdir))
    stages.extend(bench_dashboard(SIZES[size], clickhouse))
    from tutorledger.bench.district_page import suite_stages

    stages.extend(Stage(**stage) for stage in suite_stages(size))
    if kafka and clickhouse:
        from tutorledger.bench.stream import bench_stream

        stages.extend(bench_stream(sqlite_url, kafka, clickhouse, size, workdir))
    return [s.as_dict() for s in stages]
