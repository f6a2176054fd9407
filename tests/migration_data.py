"""A plaintext-format ledger to migrate: two generated districts, a school update, and one
student whose id, topic and comment no generator produces (so a search can be exact)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from builders import envelope

from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.bench.legacy_ledger import put_school, write_plaintext_ledger
from tutorledger.consumers.migrate import migrate, open_target
from tutorledger.infra.eventstore.audit import chain_scan, envelope_of, iter_rows
from tutorledger.infra.eventstore.legacy import open_store

DISTRICTS = ("mig-a", "mig-b")
STUDENT, TOPIC, COMMENT = "stu-migr-QX5522", "Migrated topic QT71", "private words QZ6604"
SECRETS = (STUDENT, TOPIC, COMMENT)


def marked_sessions(district: str) -> list[dict[str, Any]]:
    out = []
    for k in range(2):
        sid, day = f"marked-{k}", f"2026-03-0{k + 2}T15:"
        out += [
            envelope(district, sid, "requested", day + "00:00+00:00",
                     {"school_id": "sch-01", "student_id": STUDENT, "grade": 6,
                      "subject": "algebra", "topic": TOPIC}),
            envelope(district, sid, "matched", day + "02:00+00:00", {"tutor_id": "tut-7"}),
            envelope(district, sid, "completed", day + "30:00+00:00", {"outcome": "resolved"}),
            envelope(district, sid, "surveyed", day + "40:00+00:00",
                     {"helped": True, "rating": 5, "comment": COMMENT}),
        ]  # fmt: skip
    return out


def events(students: int = 60) -> list[dict[str, Any]]:
    """Raw events of both districts, interleaved district by district in halves."""
    a = generate(DistrictSpec(district_id=DISTRICTS[0], students=students, schools=2, days=5))
    b = generate(DistrictSpec(district_id=DISTRICTS[1], students=students // 2, schools=2,
                              days=5, seed=3))  # fmt: skip
    ha, hb = len(a.events) // 2, len(b.events) // 2
    return (a.events[:ha] + b.events[:hb] + marked_sessions(DISTRICTS[0])
            + a.events[ha:] + b.events[hb:])  # fmt: skip


def plaintext_ledger(url: str, students: int = 60) -> list[dict[str, Any]]:
    """Write the old-format ledger; returns its accepted events (canonical, in order)."""
    put_school(url, DISTRICTS[0], "sch-01", {"5": 120, "6": 110})
    return write_plaintext_ledger(url, events(students))


def files_of(url: str) -> list[Path]:
    path = Path(url.removeprefix("sqlite:///"))
    return sorted(p for p in path.parent.glob(path.name + "*") if p.is_file())


def digest_of(url: str) -> str:
    """The SQLite ledger's content: its file and WAL (a reader leaves an empty WAL and the
    -shm index behind, neither of which is content)."""
    h = hashlib.sha256()
    for p in files_of(url):
        if not p.name.endswith("-shm"):
            h.update(p.read_bytes())
    return h.hexdigest()


def run(source: str, target: str, **kw: Any) -> Any:
    a, b = open_store(source, read_only=True), open_target(target)
    try:
        return migrate(a, b, **kw)
    finally:
        a.close()
        b.close()


class Crash(Exception):
    """Raised from a progress callback: the migrating process dying after a page."""


def interrupted(source: str, target: str, page: int, after_pages: int) -> None:
    """A migration of `source` into `target` that dies after its `after_pages`-th page."""
    pages: list[int] = []

    def crash(n: int) -> None:
        pages.append(n)
        if len(pages) == after_pages:
            raise Crash

    with pytest.raises(Crash):
        run(source, target, page=page, on_progress=crash)


def stored(url: str) -> list[dict[str, Any]]:
    """The ledger's events in position order, as stored (sealed)."""
    ledger = open_store(url, read_only=True)
    try:
        scan = chain_scan(ledger.recorder)
        rows = iter_rows(scan, None, 2**62)
        return [envelope_of(ledger.mapper, r.stored) for r in rows if r.stored is not None]
    finally:
        ledger.close()


def decrypted(url: str) -> list[dict[str, Any]]:
    ledger = open_store(url, read_only=True)
    try:
        return [o.envelope for o in ledger.open_stored(stored(url))]
    finally:
        ledger.close()
