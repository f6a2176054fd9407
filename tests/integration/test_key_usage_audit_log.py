"""The two side tables this work keeps in the event store's database, on SQLite and on
PostgreSQL: last use per key (written by several processes at once, only ever moving
forward, read by another) and the append-only audit log (UPDATE and DELETE refused)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from tutorledger.infra.eventstore.audit_log import AuditLog
from tutorledger.infra.eventstore.key_usage import KeyUsage
from tutorledger.infra.eventstore.recorders import tuple_cursor
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

NOTE_USE = """
import sys
from datetime import UTC, datetime
from tutorledger.infra.eventstore.key_usage import KeyUsage
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

ledger = open_ledger(Settings(event_store=sys.argv[1]))
KeyUsage(ledger.recorder).record(sys.argv[2], datetime.fromtimestamp(int(sys.argv[3]), UTC))
ledger.close()
"""
BASE = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_last_use_from_several_processes_only_moves_forward(store_url: str) -> None:
    stamps = [BASE + timedelta(minutes=m) for m in (5, 1, 3)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", NOTE_USE, store_url, "k" * 16, str(int(at.timestamp()))]
        )  # fmt: skip
        for at in stamps
    ]  # started together: all make the table on a fresh database at once
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    ledger = open_ledger(Settings(event_store=store_url))
    try:
        usage = KeyUsage(ledger.recorder)
        assert usage.last_used() == {"k" * 16: max(stamps)}
        usage.record("k" * 16, BASE)
        assert usage.last_used()["k" * 16] == max(stamps)
    finally:
        ledger.close()


def test_the_audit_log_is_append_only(store_url: str) -> None:
    ledger = open_ledger(Settings(event_store=store_url))
    try:
        log = AuditLog(ledger.recorder)
        first = log.append("reconcile_invoice", "d1", {"report_sha256": "a" * 64})
        second = log.append("reconcile_invoice", "d1", {"report_sha256": "b" * 64})
        log.append("reconcile_invoice", "d2", {"report_sha256": "c" * 64})
        assert second > first
        rows = AuditLog(ledger.recorder).records("d1")
        assert [r["report_sha256"] for r in rows] == ["a" * 64, "b" * 64]
        for sql in ("UPDATE audit_log SET record = '{}'", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="append-only"):
                with tuple_cursor(log.recorder, commit=True) as c:
                    c.execute(sql)
        assert len(log.records("d1")) == 2
    finally:
        ledger.close()
