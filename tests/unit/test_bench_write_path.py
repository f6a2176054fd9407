"""The write-path benchmark's import stage on a tiny district: both sides measured in
processes of their own, the import recording every event the report holds, and the raw
baseline filling its own store. (Numbers only: nothing here asserts a speed.)"""

from __future__ import annotations

import os
from pathlib import Path

from tutorledger.bench.common import in_fresh_process
from tutorledger.bench.suite import district_events
from tutorledger.bench.write_path import bench_import
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings


def test_work_runs_in_another_interpreter() -> None:
    assert in_fresh_process(os.getpid) != os.getpid()


def test_the_import_stage_records_the_district_beside_a_raw_baseline(tmp_path: Path) -> None:
    events = district_events(400)
    ledger_url, raw_url = f"sqlite:///{tmp_path}/ledger.db", f"sqlite:///{tmp_path}/raw.db"
    row = bench_import(events, ledger_url, raw_url, tmp_path, "SQLite").as_dict()
    assert row["accepted"] == row["events"] > 300 and row["rejected"] == 0
    assert row["events_per_second"] > 0 and row["baseline_events_per_second"] > 0
    ledger = open_ledger(Settings(event_store=ledger_url))
    try:
        assert ledger.index.head("imported-sqlite") is not None
        assert ledger.recorder.max_notification_id() == row["events"]
    finally:
        ledger.close()
    assert (tmp_path / "raw.db.raw").exists(), "the baseline wrote a store of its own"
