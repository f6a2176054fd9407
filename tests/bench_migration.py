"""Migration rate next to a fresh ingest of the same events, in the same run (not a test).

    nice .venv/bin/python tests/bench_migration.py [--students 4100] [--store sqlite|URL…]

Writes a plaintext-format ledger of two generated districts, then times `migrate` into a
new store and `record_events` of the same accepted events (1,000 per batch, the migration's
page) into another, and prints both rates and their ratio. With PostgreSQL, give three
empty databases' URLs (old, target, fresh).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from legacy import write_plaintext_ledger  # noqa: E402

from tutorledger.bench.district import DistrictSpec, generate  # noqa: E402
from tutorledger.consumers.migrate import migrate, open_target  # noqa: E402
from tutorledger.infra.legacy import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=4100)
    parser.add_argument("--store", nargs="*", help="old, target, fresh URLs (default: SQLite)")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    old, target, fresh = args.store or [
        f"sqlite:///{scratch.name}/{n}.db" for n in ("old", "new", "fresh")
    ]
    raw = []
    for i, name in enumerate(("bench-a", "bench-b")):
        spec = DistrictSpec(
            district_id=name, students=args.students, schools=8, days=20, seed=i + 1
        )
        raw += generate(spec).events
    accepted = write_plaintext_ledger(old, raw, batch=1000)
    ledger = open_store(fresh)
    started = time.perf_counter()
    for i in range(0, len(accepted), 1000):
        ledger.record_events(accepted[i : i + 1000])
    ingest = len(accepted) / (time.perf_counter() - started)
    ledger.close()
    source, new = open_store(old, read_only=True), open_target(target)
    report = migrate(source, new)
    source.close()
    new.close()
    rate = report.migrated / report.seconds
    sys.stdout.write(
        f"{report.migrated:,} events: migrate {rate:,.0f} ev/s, "
        f"fresh ingest {ingest:,.0f} ev/s, ratio {rate / ingest:.2f}\n"
    )
    scratch.cleanup()


if __name__ == "__main__":
    main()
