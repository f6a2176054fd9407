"""What reading the session facts with FINAL costs, beside reading them plain, same data.

The metrics read `session_facts` with FINAL (projections.read_models.ReadTables), so that a
position two racing writers both stored counts once. FINAL only has work to do where parts
overlap: this loads a district through the projectors' writer (blocks of 100,000 events,
so the partition holds several parts, as right after a load or a rebuild), times one
aggregate over the facts plain and with FINAL (alternating, median of `--repeats`), then
merges the table into one part (OPTIMIZE … FINAL) and times both again.

    python -m tutorledger.bench.final_cost --size 300000 [--clickhouse URL] [--repeats 11]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from typing import Any

from tutorledger.bench.metrics_latency import load_stream
from tutorledger.bench.stream_district import spec_for, stream
from tutorledger.infra.clickhouse import ProjectionStore, open_projection_store
from tutorledger.infra.settings import Settings
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.read_models import current_tables

AGGREGATE = "SELECT count(), uniqExact(student_key), sum(wait_us) FROM {table} WHERE {where}"
SCOPES: dict[str, dict[str, Any]] = {
    "whole range": {},
    "one subject": {"subject": "geometry"},
    "one school": {"school_id": "sch-03"},
}
PARTS_SQL = """
SELECT count() FROM system.parts
WHERE database = currentDatabase() AND table = %(table)s AND active
"""


def timed(store: ProjectionStore, filters: Filters, facts: str, repeats: int) -> dict[str, float]:
    """Median ms of the aggregate plain and with FINAL, alternating."""
    where = facts_where(filters, (0, 1, 2, 3, 4))
    samples: dict[str, list[float]] = {"plain_ms": [], "final_ms": []}
    for _ in range(repeats):
        for key, table in (("plain_ms", facts), ("final_ms", f"{facts} FINAL")):
            started = time.perf_counter()
            store.execute(AGGREGATE.format(table=table, where=where), filters.params())
            samples[key].append((time.perf_counter() - started) * 1000)
    return {key: round(statistics.median(values), 1) for key, values in samples.items()}


def run(size: int, repeats: int, clickhouse: str | None) -> dict[str, Any]:
    spec = spec_for(size)
    with tempfile.TemporaryDirectory(prefix="tl-final-") as tmp:
        url = clickhouse or f"chdb://{tmp}/chdb?database=bench_final"
        store = open_projection_store(Settings(clickhouse=url))
        try:
            head = load_stream(store, stream(spec), block=100_000)
            facts = current_tables(store).facts
            report: dict[str, Any] = {"backend": store.kind, "events": head}
            for state in ("unmerged", "merged"):
                if state == "merged":
                    store.execute(f"OPTIMIZE TABLE {facts} FINAL")
                parts = int(store.execute(PARTS_SQL, {"table": facts})[0][0])
                for name, scope in SCOPES.items():
                    filters = Filters(spec.district_id, head, spec.tz, **scope)
                    report[f"{state} ({parts} parts), {name}"] = timed(
                        store, filters, facts, repeats
                    )
        finally:
            store.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--clickhouse", default=None, help="clickhouse://… (default: chdb)")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(run(args.size, args.repeats, args.clickhouse), indent=1) + "\n")


if __name__ == "__main__":
    main()
