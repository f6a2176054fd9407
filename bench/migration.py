"""`migrate-ledger`'s core beside a fresh ingest of the same events, in the same run.

A plaintext-format ledger of two generated districts (bench.legacy_ledger) is written first,
untimed. Then the same accepted events are recorded into a new store through the ledger's
write path (`record_events`, 1,000 per batch: the migration's page size), and `migrate`
copies the old ledger into another new store. The migration does what the ingest does (the
write path: sealing, keyed digests, index, chain) plus reading and re-verifying the old
chain, so the ratio says what the copy costs over ingesting the events afresh. SQLite only:
each run needs three empty stores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tutorledger.bench.common import BATCH, Stage
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.bench.legacy_ledger import write_plaintext_ledger
from tutorledger.consumers.migrate import migrate, open_target
from tutorledger.infra.eventstore.legacy import open_store

DISTRICTS = ("bench-mig-a", "bench-mig-b")


def old_events(size: int) -> list[dict[str, Any]]:
    """About `size` events of two districts (the generator makes ~12 per student)."""
    events: list[dict[str, Any]] = []
    for seed, district in enumerate(DISTRICTS, start=1):
        spec = DistrictSpec(district_id=district, students=max(25, size // 24), schools=8,
                            days=20, seed=seed, duplicate_rate=0.0)  # fmt: skip
        events += generate(spec).events
    return events


def fresh_ingest_seconds(accepted: list[dict[str, Any]], store_url: str) -> float:
    """Seconds to record `accepted` into an empty store, one write-path call per batch."""
    ledger = open_store(store_url)
    try:
        started = time.perf_counter()
        for i in range(0, len(accepted), BATCH):
            ledger.record_events(accepted[i : i + BATCH])
        return time.perf_counter() - started
    finally:
        ledger.close()


def bench_migration(size: int, workdir: Path) -> Stage:
    """One stage: migrate's events/s, the fresh ingest of the same events as its baseline."""
    old, target, fresh = (f"sqlite:///{workdir}/migration-{n}.db" for n in ("old", "new", "fresh"))
    accepted = write_plaintext_ledger(old, old_events(size), batch=BATCH)
    ingest = fresh_ingest_seconds(accepted, fresh)
    source, new = open_store(old, read_only=True), open_target(target)
    try:
        report = migrate(source, new, page=BATCH)
    finally:
        source.close()
        new.close()
    # The stage's events are the migrated ones (the accepted events, plus any school
    # update); the baseline's time is scaled to that count so both rates are per event.
    baseline = ingest * report.migrated / len(accepted) if accepted else None
    extra = {"districts": len(DISTRICTS), "page": BATCH, "fresh_ingest_events": len(accepted)}
    return Stage("migrate-ledger (SQLite → SQLite)", report.migrated, report.seconds,
                 "fresh ingest, record_events", baseline, extra)  # fmt: skip
