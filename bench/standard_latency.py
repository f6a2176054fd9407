"""Latency of the equity-gaps and dosage-standard figures beside their floors, in-process.

Loads a district of about `--size` events with roster groups (bench.groups_latency.load)
into chdb, or reuses one a previous run left in `--data DIR` (the dir keeps the loaded
head in `loaded.json`; delete the dir to rebuild). Then times, in the same run and on the
same data, each figure function (`--repeats` times, nearest-rank p50/p95 wall ms) and the
process's CPU ms per call (chdb runs in this process, so its threads count; CPU time is
less sensitive than wall time to the other processes on a shared machine), with the
1-minute load average at the start and end of each. Floors: a bare `count()` of the
completed facts, the same with FINAL (as the metrics read them), and the `dosage` metric
over the same rows; every figure gets its ratio to them.

    python -m tutorledger.bench.standard_latency --size 2000000 [--data /tmp/tl-std-2m]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tutorledger.bench.groups_latency import load
from tutorledger.bench.metrics_latency import cpu_seconds, percentile
from tutorledger.bench.stream_district import StreamSpec, spec_for
from tutorledger.domain.district import SchoolHours
from tutorledger.domain.dosage_standard import DosageStandard
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.dosage import dosage
from tutorledger.projections.dosage_standard import dosage_standard, falling_short, met_students_sql
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.steps import COMPLETED
from tutorledger.projections.student_groups import equity_gaps

FLOORS = ("count() of the completions", "count() FINAL of the completions", "dosage")


def timed(work: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """p50/p95 wall ms, CPU ms per call (this process, all threads), load average around."""
    work()
    pid = os.getpid()
    load_before = os.getloadavg()[0]
    cpu_before = cpu_seconds(pid)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(percentile(samples, 50), 1),
        "p95_ms": round(percentile(samples, 95), 1),
        "cpu_ms": round((cpu_seconds(pid) - cpu_before) * 1000 / repeats, 1),
        "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def queries(store: ProjectionStore, spec: StreamSpec, head: int) -> dict[str, Callable[[], Any]]:
    whole = Filters(spec.district_id, head, spec.tz, generation=1)
    where = facts_where(whole, (COMPLETED,))
    count = f"SELECT count() FROM session_facts_g1 WHERE {where}"
    final = f"SELECT count() FROM session_facts_g1 FINAL WHERE {where}"
    standard, hours = DosageStandard(), SchoolHours()
    figures = partial(dosage_standard, store, whole, standard, hours)
    return {
        FLOORS[0]: partial(store.execute, count, whole.params()),
        FLOORS[1]: partial(store.execute, final, whole.params()),
        FLOORS[2]: partial(dosage, store, whole, standard.session_minutes),
        "equity-gaps": partial(
            equity_gaps, store, whole, met_students_sql(store, whole, standard, hours)
        ),
        "equity-gaps, reach and regular use only": partial(equity_gaps, store, whole),
        "dosage-standard": partial(figures, ()),
        "dosage-standard, group_by=school": partial(figures, ("school_id",)),
        "dosage-standard, group_by=cohort": partial(figures, ("cohort_id",)),
        "dosage-standard/students": partial(falling_short, store, whole, standard, hours),
    }


def with_ratios(timings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each figure's p50 and CPU over each floor's, same run."""
    for name, t in timings.items():
        if name in FLOORS:
            continue
        t["ratio"] = {
            floor: {
                "p50": round(t["p50_ms"] / max(timings[floor]["p50_ms"], 0.1), 2),
                "cpu": round(t["cpu_ms"] / max(timings[floor]["cpu_ms"], 0.1), 2),
            }
            for floor in FLOORS
        }
    return timings


def open_data(data: Path, size: int) -> tuple[ProjectionStore, int, float | None]:
    """The store in `data`, loaded now unless a previous run loaded it at this size."""
    marker = data / "loaded.json"
    url = f"chdb://{data}/chdb?database=bench_standard"
    store = open_projection_store(Settings(clickhouse=url))
    if marker.exists() and json.loads(marker.read_text())["size"] == size:
        return store, int(json.loads(marker.read_text())["head"]), None
    started = time.perf_counter()
    head = load(store, spec_for(size))
    marker.write_text(json.dumps({"size": size, "head": head}))
    return store, head, round(time.perf_counter() - started, 1)


def run(size: int, repeats: int, data: Path) -> dict[str, Any]:
    spec = spec_for(size)
    store, head, loaded = open_data(data, size)
    try:
        timings = {name: timed(work, repeats) for name, work in queries(store, spec, head).items()}
    finally:
        store.close()
    return {
        "backend": "chdb",
        "events": head,
        "load_seconds": loaded,
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "ms": with_ratios(timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--data", type=Path, default=None, help="dir to keep the data in")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tl-standard-") as tmp:
        report = run(args.size, args.repeats, args.data or Path(tmp))
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
