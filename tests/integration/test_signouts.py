"""Dashboard sign-outs on real event stores, across processes: what one `serve --workers`
process records, every other sees (SQLite file and PostgreSQL), and processes making the
table at the same instant on a fresh database do not trip over each other."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from tutorledger.infra.eventstore.signouts import SignOuts
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

SIGN_OUT = """
import sys
from datetime import UTC, datetime, timedelta
from tutorledger.infra.eventstore.signouts import SignOuts
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

ledger = open_ledger(Settings(event_store=sys.argv[1]))
SignOuts(ledger.recorder).end(sys.argv[2], datetime.now(UTC) + timedelta(hours=8))
ledger.close()
"""


def test_sign_outs_recorded_by_other_processes_are_seen_here(store_url: str) -> None:
    ledger = open_ledger(Settings(event_store=store_url))
    try:
        workers = [
            subprocess.Popen([sys.executable, "-c", SIGN_OUT, store_url, f"worker-{n}"])
            for n in range(3)
        ]  # started together: all three make the table on a fresh database at once
        assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
        here = SignOuts(ledger.recorder)
        assert all(here.ended(f"worker-{n}") for n in range(3))
        assert not here.ended("worker-3")
        here.end("lapsed", datetime.now(UTC) - timedelta(seconds=1))
        here.end("fresh", datetime.now(UTC) + timedelta(hours=1))
        assert not here.ended("lapsed") and here.ended("fresh")
    finally:
        ledger.close()
