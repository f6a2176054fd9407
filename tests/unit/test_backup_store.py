"""Backup pieces without servers: the erasure journal, the SQLite backup and its checks.

The full backup → erase → restore cycle on both stores is tests/integration/test_backup.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from builders import envelope

from tutorledger.domain.ledger import Ledger
from tutorledger.infra.clickhouse import chdb_holder
from tutorledger.infra.eventstore.backup import (
    MANIFEST,
    SQLITE_FILE,
    BackupUnusable,
    TargetNotEmpty,
    backup,
    discard_staged,
    finish_sqlite,
    restore,
    staging_path,
)
from tutorledger.infra.eventstore.erasure_journal import JournalUnreadable, read_journal
from tutorledger.infra.eventstore.reerase import reapply_erasures
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

D, STUDENT = "d-bk", "stu-bk-77Q1"


def requested(session: str, student: str) -> dict[str, object]:
    return envelope(D, session, "requested", "2026-03-02T15:00:00+00:00",
                    {"school_id": "s1", "student_id": student, "grade": 6, "subject": "algebra",
                     "topic": "fractions"})  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(event_store=f"sqlite:///{tmp_path}/ledger.db", var_dir=tmp_path / "var",
                    erasure_journal=tmp_path / "kept-apart" / "erasures.jsonl")  # fmt: skip


def filled(settings: Settings, students: int = 3) -> Ledger:
    ledger = open_ledger(settings)
    outcomes = ledger.record_events(
        [requested(f"s-{i}", STUDENT if i == 0 else f"stu-{i}") for i in range(students)]
    )
    assert {o.status for o in outcomes} == {"accepted"}
    return ledger


def test_an_erasure_is_journaled_with_its_token_and_never_the_id(settings: Settings) -> None:
    ledger = filled(settings)
    try:
        key = ledger.index.find_student(D, STUDENT)
        assert key is not None
        ledger.erase(D, key.token, "parent_request")
    finally:
        ledger.close()
    text = settings.erasure_journal_path.read_text()
    assert STUDENT not in text and "fractions" not in text
    (entry,) = read_journal(settings.erasure_journal_path)
    assert (entry.district_id, entry.token, entry.reason) == (D, key.token, "parent_request")


def test_an_erasure_that_cannot_be_journaled_does_not_happen(settings: Settings) -> None:
    settings.erasure_journal_path.mkdir(parents=True)  # a folder where the file should be
    ledger = filled(settings)
    try:
        key = ledger.index.find_student(D, STUDENT)
        assert key is not None
        head = ledger.recorder.max_notification_id()
        with pytest.raises(OSError):
            ledger.erase(D, key.token, "parent_request")
        assert ledger.recorder.max_notification_id() == head
        assert ledger.index.find_student(D, STUDENT) == key
    finally:
        ledger.close()


def test_a_torn_last_line_is_skipped_and_a_bad_line_elsewhere_is_refused(tmp_path: Path) -> None:
    good = json.dumps({"district_id": D, "student_token": "t1", "reason": "r", "at": "x"})
    path = tmp_path / "j.jsonl"
    path.write_text(good + "\n" + '{"district_id": "d", "stud')
    assert [e.token for e in read_journal(path)] == ["t1"]
    path.write_text("not json\n" + good + "\n")
    with pytest.raises(JournalUnreadable, match=":1:"):
        read_journal(path)


def test_backup_restore_applies_a_later_erasure_from_the_journal(
    settings: Settings, tmp_path: Path
) -> None:
    ledger = filled(settings)
    key = ledger.index.find_student(D, STUDENT)
    assert key is not None
    folder = tmp_path / "backup"
    seen: list[tuple[int, int]] = []
    manifest = backup(settings.event_store, folder, lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1]
    assert manifest.events == 3 and manifest.districts[D]["head_position"] == 3
    ledger.erase(D, key.token, "parent_request")
    ledger.close()

    target = settings.model_copy(update={"event_store": f"sqlite:///{tmp_path}/new/ledger.db"})
    restore(target.event_store, folder)
    staged_url = f"sqlite:///{staging_path(tmp_path / 'new' / 'ledger.db')}"
    staged = open_ledger(target.model_copy(update={"event_store": staged_url}))
    try:
        assert staged.index.find_student(D, STUDENT) == key  # the backup's live key
        report = reapply_erasures(staged, read_journal(settings.erasure_journal_path))
    finally:
        staged.close()
    assert report.as_dict()["erased_after_backup"] == 1
    finish_sqlite(target.event_store)
    restored = open_ledger(target)
    try:
        assert restored.index.find_student(D, STUDENT) is None
        assert restored.index.student_keys([key.token])[key.token].secret is None
        assert restored.recorder.max_notification_id() == 4  # the erasure, recorded again
    finally:
        restored.close()
    assert not staging_path(tmp_path / "new" / "ledger.db").exists()


def test_restore_refuses_a_store_with_rows_and_a_tampered_backup(
    settings: Settings, tmp_path: Path
) -> None:
    filled(settings).close()
    folder = tmp_path / "backup"
    backup(settings.event_store, folder)
    with pytest.raises(BackupUnusable, match="not empty"):
        backup(settings.event_store, folder)
    store_file = Path(settings.event_store.removeprefix("sqlite:///"))
    before = store_file.read_bytes()
    with pytest.raises(TargetNotEmpty, match="already holds data"):
        restore(settings.event_store, folder)
    assert store_file.read_bytes() == before
    assert not any(p.name.endswith(".restoring") for p in tmp_path.iterdir())
    empty = f"sqlite:///{tmp_path}/fresh/ledger.db"
    open_ledger(settings.model_copy(update={"event_store": empty})).close()  # tables, no rows
    restore(empty, folder)  # a new store's empty tables are no data
    discard_staged(empty)
    conn = sqlite3.connect(folder / SQLITE_FILE)
    conn.execute("DELETE FROM student_keys")
    conn.commit()
    conn.close()
    with pytest.raises(BackupUnusable, match="differs from the manifest"):
        restore(empty, folder)
    (folder / MANIFEST).unlink()
    with pytest.raises(BackupUnusable, match="not a finished backup"):
        restore(empty, folder)


def test_chdb_holder_names_another_process_only(tmp_path: Path) -> None:
    assert chdb_holder(tmp_path) is None  # no status file: nobody
    status = tmp_path / "status"
    status.write_text(f"PID: {os.getpid()}\n")
    assert chdb_holder(tmp_path) is None  # present but not locked
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(status)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert chdb_holder(tmp_path) == holder.pid
    finally:
        holder.kill()
        holder.wait()
    assert chdb_holder(tmp_path) is None  # the lock went with its process


# What ClickHouse does with its status file while it runs: an exclusive flock, its PID inside.
HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, f"PID: {os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(600)
"""


# Another process committing to the store for as long as it runs (a busy emitter, in effect).
WRITE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("CREATE TABLE IF NOT EXISTS busy (n INTEGER)")
print("writing", flush=True)
n = 0
while True:
    n += 1
    conn.execute("INSERT INTO busy VALUES (?)", (n,))
"""


def test_a_backup_finishes_while_another_process_keeps_committing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One page a step, so many steps, all from the snapshot the backup started with: the
    copy never starts again (the pages copied only grow), however often the writer commits."""
    filled(settings, students=40).close()
    monkeypatch.setattr("tutorledger.infra.eventstore.backup.PAGES", 1)
    store_file = settings.event_store.removeprefix("sqlite:///")
    writer = subprocess.Popen([sys.executable, "-c", WRITE, store_file], stdout=subprocess.PIPE)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"writing\n"
        steps: list[int] = []
        manifest = backup(settings.event_store, tmp_path / "b", lambda d, t: steps.append(d))
    finally:
        writer.kill()
        writer.wait()
    assert len(steps) > 10 and manifest.events == 40
    assert steps == sorted(steps), "the copy started again: it took a new snapshot in a step"
    conn = sqlite3.connect(tmp_path / "b" / SQLITE_FILE)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
