"""The `migrate-ledger` benchmark stage on a tiny ledger: it migrates every event the old
ledger accepted, reports both rates and their ratio, and leaves a finished, verifying target.
(Numbers only: nothing here asserts a speed.)"""

from __future__ import annotations

from pathlib import Path

from tutorledger.bench.migration import bench_migration
from tutorledger.consumers.continuity import unfinished
from tutorledger.infra.eventstore.audit import verify_chain
from tutorledger.infra.eventstore.legacy import event_count, open_store


def test_the_stage_migrates_the_whole_ledger_and_reports_a_ratio(tmp_path: Path) -> None:
    row = bench_migration(600, tmp_path).as_dict()
    fresh = open_store(f"sqlite:///{tmp_path}/migration-fresh.db", read_only=True)
    target = open_store(f"sqlite:///{tmp_path}/migration-new.db", read_only=True)
    try:
        ingested = event_count(fresh)
        assert ingested == row["fresh_ingest_events"] > 400
        assert row["events"] == ingested, "every accepted event migrated, nothing more"
        assert event_count(target) == ingested + row["districts"]  # + one marker each
        assert not unfinished(target) and verify_chain(target.recorder, target.mapper).ok
    finally:
        fresh.close()
        target.close()
    assert row["events_per_second"] > 0 and row["baseline_events_per_second"] > 0
    assert row["ratio_to_baseline"] > 0 and row["baseline"] == "fresh ingest, record_events"
