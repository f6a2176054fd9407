"""Helpers the session-import tests share: a generated vendor report, the shipped mapping,
and ways to compare two ledgers (chain head; events in order without positions)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tutorledger.api.cli.importing import mapping_path
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.bench.vendor import COLUMNS, write_report
from tutorledger.consumers.projector import decode
from tutorledger.infra.eventstore.audit import verify_chain
from tutorledger.infra.importers.session_mapping import RowConverter, SessionMapping, load_mapping

ZONE = "America/New_York"


def tutorcom() -> SessionMapping:
    return load_mapping(mapping_path("tutorcom"))


def converter(district: str, mapping: SessionMapping | None = None) -> RowConverter:
    return RowConverter(mapping or tutorcom(), district, "UTC")


def truth(
    district: str, students: int = 300, days: int = 10, seed: int = 7
) -> list[dict[str, Any]]:
    """Synthetic lifecycle events (no resends), in time order: what really happened."""
    spec = DistrictSpec(district_id=district, students=students, days=days, seed=seed,
                        duplicate_rate=0.0)  # fmt: skip
    return generate(spec).events


def vendor_csv(path: Path, events: list[dict[str, Any]], bad_rows: bool = False) -> Path:
    """The vendor's report of `events`; with `bad_rows`, bad rows appended (see BAD_ROWS)."""
    write_report(path, events, ZONE)
    if bad_rows:
        with path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            for row in BAD_ROWS:
                writer.writerow(row)
    return path


def _row(cells: dict[str, str]) -> list[str]:
    return [cells.get(c, "") for c in COLUMNS]


BASE = {"Student ID": "stu-bad", "School Code": "sch-01", "Grade": "7", "Subject": "Algebra",
        "Request Time": "2026-09-08 17:00:00"}  # fmt: skip
# Appended in this order; each with the rejection code(s) it must produce.
BAD_ROWS = [
    _row(BASE | {"Session ID": "bad-grade", "Grade": "13"}),
    ["bad-width", "only", "three"],
    _row(BASE | {"Session ID": "bad-match", "Start Time": "2026-09-08 16:00:00", "Tutor ID": "t1"}),
    _row(BASE | {"Session ID": "bad-student", "Student ID": "pupil@example.org"}),
    _row(BASE | {"Session ID": "bad-time", "Request Time": "yesterday"}),
]
BAD_CODES = {"invalid_row": 3, "timestamp_regression": 1, "invalid_event": 1}


def events_in_order(ledger: Any, district: str) -> list[tuple[str, dict[str, Any]]]:
    """(event_id, envelope) of a district's events in ledger order (positions left out),
    decrypted: the student's personal fields as the emitter sent them."""
    notes = ledger.recorder.select_notifications(start=1, limit=10**9)
    found = [o.envelope for o in ledger.open_stored([decode(ledger, n) for n in notes])]
    return [(e["event_id"], e) for e in found if e["district_id"] == district]


def chain_head(ledger: Any, district: str) -> tuple[int, str]:
    """The district's verified chain head (position, hash)."""
    report = verify_chain(ledger.recorder, ledger.mapper, district)
    assert report.ok, report.as_dict()
    return report.heads[district]
