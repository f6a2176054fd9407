"""What chaining provenance costs on ingest: `Ledger.record_events` of the same district's
events, in batches of 1000, with and without a provenance record, in one run.

Each side appends into a fresh SQLite ledger; the sides alternate over `rounds` rounds,
taking turns to go first (so drift in the machine's load hits both alike). Reported per
side: the best and the median round, in events per second of wall time and of this
process's CPU time (the store is in-process SQLite, so CPU time covers the whole append
and is far less disturbed by other processes on a shared machine), with the ratios.
Run: `python -m tutorledger.bench.provenance [--students N] [--days N] [--rounds N]`;
prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tutorledger.bench.common import BATCH
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.domain.provenance import Provenance, by_key
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings


def append_seconds(
    events: Sequence[dict[str, Any]], directory: Path, provenance: Provenance | None
) -> tuple[float, float]:
    """(wall, CPU) seconds to record `events` in batches of BATCH into a fresh ledger."""
    ledger = open_ledger(Settings(event_store=f"sqlite:///{directory}/ledger.db"))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(events), BATCH):
            outcomes = ledger.record_events(events[i : i + BATCH], provenance)
            if any(o.status == "rejected" for o in outcomes):
                raise RuntimeError("the generated district has a rejected event")
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        ledger.close()


def run(spec: DistrictSpec, rounds: int) -> dict[str, Any]:
    events = generate(spec).events
    sides: dict[str, Provenance | None] = {
        "without": None,
        "with": by_key("0123456789abcdef", "vendor-a"),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="tl-bench-prov-") as tmp:
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                directory = Path(tmp) / f"{name}-{r}"
                directory.mkdir()
                times[name].append(append_seconds(events, directory, sides[name]))
    report: dict[str, Any] = {"events": len(events), "rounds": rounds}
    for clock, index in (("wall", 0), ("cpu", 1)):
        for pick, choose in (("best", min), ("median", statistics.median)):
            rates = {n: len(events) / choose([t[index] for t in ts]) for n, ts in times.items()}
            report[f"{clock}_{pick}_events_per_second"] = {n: round(v) for n, v in rates.items()}
            report[f"{clock}_{pick}_with_over_without"] = round(rates["with"] / rates["without"], 3)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--students", type=int, default=1500)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    spec = DistrictSpec(students=args.students, days=args.days)
    sys.stdout.write(json.dumps(run(spec, args.rounds)) + "\n")


if __name__ == "__main__":
    main()
