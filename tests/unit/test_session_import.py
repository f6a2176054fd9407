"""Session-history import on a real SQLite ledger: the mapping's rules, bad rows reported by
line (never with a student's value), re-import stores nothing, NDJSON, and an interrupted
import resumed gives the ledger an uninterrupted one gives (same chain head)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid5

import pytest
from hypothesis import given
from hypothesis import strategies as st
from imports import (
    BAD_CODES,
    BAD_ROWS,
    chain_head,
    converter,
    events_in_order,
    truth,
    vendor_csv,
)

from tutorledger.domain.ledger import Ledger, Outcome
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.importers.session_mapping import (
    IMPORT_NAMESPACE,
    InvalidMapping,
    import_event_id,
    load_mapping,
)
from tutorledger.infra.importers.session_reader import batches
from tutorledger.infra.importers.sessions import SessionImport
from tutorledger.infra.settings import Settings

D = "import-d"
ROW = {"Session ID": "s-1", "Student ID": "stu-1", "School Code": "sch-1", "Grade": "K",
       "Subject": "US History", "Request Time": "2026-03-08 01:30:00",
       "Start Time": "2026-03-08 03:10:00.250", "Tutor ID": "tut-9",
       "End Time": "2026-03-08T08:40:00Z", "End Reason": "completed",
       "Resolution": "Partially resolved", "Was This Session Helpful": "yes",
       "Rating": "4"}  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    app = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/ledger.db"))
    yield app
    app.close()


def other_ledger(tmp_path: Path, name: str) -> Ledger:
    return open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/{name}.db"))


# -- the mapping -----------------------------------------------------------------------------


def test_a_row_becomes_its_lifecycle_in_order_with_local_times_and_mapped_values() -> None:
    events, problems = converter(D).events(2, ROW)
    assert problems == []
    assert [e["type"] for e in events] == [
        "session.requested", "session.matched", "session.completed", "session.surveyed",
    ]  # fmt: skip
    req, match, done, survey = events
    # Naive times are New York local (the mapping's zone): across the spring-forward gap.
    assert req["occurred_at"] == "2026-03-08T01:30:00-05:00"
    assert match["occurred_at"] == "2026-03-08T03:10:00.250000-04:00"
    assert done["occurred_at"] == "2026-03-08T08:40:00+00:00"  # an offset is kept
    assert req["payload"] == {"school_id": "sch-1", "student_id": "stu-1", "grade": 0,
                              "subject": "us-history"}  # fmt: skip
    assert done["payload"] == {"outcome": "partial"}
    assert survey["occurred_at"] == done["occurred_at"]  # no survey time: the end time
    assert survey["payload"] == {"helped": True, "rating": 4}
    again, _ = converter(D).events(99, dict(ROW))
    assert [e["event_id"] for e in again] == [e["event_id"] for e in events]
    elsewhere, _ = converter("other-d").events(2, ROW)
    assert not {e["event_id"] for e in elsewhere} & {e["event_id"] for e in events}


def test_cancelled_rows_and_unmatched_rows() -> None:
    left = ROW | {"End Reason": "Student left", "Was This Session Helpful": "", "Rating": ""}
    events, _ = converter(D).events(2, left)
    assert [e["type"] for e in events][-1] == "session.cancelled"
    assert events[-1]["payload"] == {"reason": "student_left"}
    waiting = {k: ROW[k] for k in ("Session ID", "Student ID", "School Code", "Grade", "Subject",
                                   "Request Time")}  # fmt: skip
    assert [e["type"] for e in converter(D).events(2, waiting)[0]] == ["session.requested"]
    no_end = waiting | {"End Reason": "Timed out"}
    events, problems = converter(D).events(5, no_end)
    assert [p.code for p in problems] == ["invalid_row"] and problems[0].line == 5
    assert "ended_at" in problems[0].message


def test_unreadable_facts_name_the_column_and_keep_the_rest_of_the_row() -> None:
    events, problems = converter(D).events(7, ROW | {"Start Time": "soon"})
    assert [e["type"] for e in events] == [
        "session.requested", "session.completed", "session.surveyed",
    ]  # fmt: skip
    assert [(p.line, p.event_type) for p in problems] == [(7, "session.matched")]
    events, problems = converter(D).events(8, ROW | {"Grade": "13"})
    assert events == [] and "grade" in problems[0].message


@pytest.mark.parametrize(
    "text, where",
    [
        ('format = "xml"\n[columns]\n', "format"),
        ("[columns]\nsession_id = 1\n", "columns"),
        ('time_zone = "Mars/Olympus"\n', "time_zone"),
        ('[values.student_id]\n"a" = "b"\n', "values"),
        ("not toml at all = = \n", "mapping"),
    ],
)
def test_a_bad_mapping_is_refused_with_a_code(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(InvalidMapping) as caught:
        load_mapping(path)
    assert caught.value.code == "invalid_mapping"
    assert where in caught.value.message + json.dumps(caught.value.details)


# -- importing -------------------------------------------------------------------------------


def run(ledger: Any, source: Path, report: Path, district: str = D) -> dict[str, Any]:
    return SessionImport(ledger, source, converter(district), report).run()


def test_import_accepts_every_event_and_a_reimport_stores_nothing(
    ledger: Ledger, tmp_path: Path
) -> None:
    events = truth(D)
    source = vendor_csv(tmp_path / "sessions.csv", events)
    report = run(ledger, source, tmp_path / "report.json")
    assert report["events"] == {"accepted": len(events), "duplicate": 0, "rejected": 0}
    assert json.loads((tmp_path / "report.json").read_text())["events"] == report["events"]
    assert not list(tmp_path.glob("report.json.*"))  # checkpoint and partial list removed
    head = chain_head(ledger, D)
    again = run(ledger, source, tmp_path / "again.json")
    assert again["events"] == {"accepted": 0, "duplicate": len(events), "rejected": 0}
    assert chain_head(ledger, D) == head
    imported = {(e["session_id"], e["type"]): e for _, e in events_in_order(ledger, D)}
    for e in events:  # the same facts as the truth, event for event
        got = imported[(e["session_id"], e["type"])]
        assert got["payload"] == e["payload"]
        assert got["occurred_at"] == events_in_order_time(e["occurred_at"])


def events_in_order_time(occurred_at: str) -> str:
    from datetime import UTC, datetime

    at = datetime.fromisoformat(occurred_at).astimezone(UTC)
    return at.isoformat().replace("+00:00", "Z")


def test_bad_rows_are_reported_by_line_and_code_without_student_values(
    ledger: Ledger, tmp_path: Path
) -> None:
    events = truth(D, students=40)
    source = vendor_csv(tmp_path / "sessions.csv", events, bad_rows=True)
    report = run(ledger, source, tmp_path / "report.json")
    assert report["rejected_by_code"] == BAD_CODES
    first_bad = len(source.read_text().splitlines()) - len(BAD_ROWS) + 1
    lines = sorted(r["line"] for r in report["rejections"])
    assert lines == [first_bad + i for i in range(len(BAD_ROWS))]
    assert report["events"]["accepted"] == len(events) + 1  # bad-match's request
    assert "pupil@example.org" not in (tmp_path / "report.json").read_text()  # requested
    student = next(r for r in report["rejections"] if r["session_id"] == "bad-student")
    assert student["code"] == "invalid_event" and "payload.student_id" in student["message"]


def test_ndjson_with_nested_fields(ledger: Ledger, tmp_path: Path) -> None:
    mapping = load_mapping_text(
        tmp_path,
        'format = "ndjson"\ntime_zone = "America/Chicago"\n[columns]\nsession_id = "id"\n'
        'requested_at = "times.requested"\nstudent_id = "student.id"\nschool_id = "school"\n'
        'grade = "grade"\nsubject = "subject"\nmatched_at = "times.matched"\n'
        'tutor_id = "tutor"\n',
    )
    rows = [
        {"id": 1, "times": {"requested": "2026-03-02 16:00:00", "matched": None},
         "student": {"id": "stu-1"}, "school": "s1", "grade": 5, "subject": "Reading"},
        {"id": 2, "times": {"requested": "2026-03-02 16:05:00", "matched": "2026-03-02 16:06:00"},
         "student": {"id": "stu-2"}, "school": "s1", "grade": 12, "subject": "Reading",
         "tutor": "t-1"},
    ]  # fmt: skip
    source = tmp_path / "s.ndjson"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n[1, 2]\n")
    job = SessionImport(ledger, source, converter(D, mapping), tmp_path / "r.json")
    report = job.run()
    assert report["events"] == {"accepted": 3, "duplicate": 0, "rejected": 1}
    assert report["rejections"][0]["line"] == 4
    stored = [e for _, e in events_in_order(ledger, D)]
    assert stored[0]["occurred_at"] == "2026-03-02T22:00:00Z"
    assert stored[0]["payload"]["grade"] == 5 and stored[0]["session_id"] == "1"


def load_mapping_text(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    return load_mapping(path)


class Crash(BaseException):
    """Stands in for the process dying (not an Exception: nothing may catch it)."""


class CrashingLedger:
    """Records through the real ledger; dies before (or just after) batch number `at`."""

    def __init__(self, ledger: Ledger, at: int, after_commit: bool) -> None:
        self.ledger, self.at, self.after_commit, self.calls = ledger, at, after_commit, 0

    def record_events(self, raws: Sequence[Any], provenance: Any = None) -> list[Outcome]:
        self.calls += 1
        if self.calls == self.at and not self.after_commit:
            raise Crash
        outcomes = self.ledger.record_events(raws, provenance)
        if self.calls == self.at:
            raise Crash
        return outcomes


@pytest.mark.parametrize("prefetch", [0, 1 << 40], ids=["reader-child", "reader-here"])
@pytest.mark.parametrize("after_commit", [False, True], ids=["mid-batch", "after-commit"])
def test_an_interrupted_import_resumes_to_the_same_ledger(
    ledger: Ledger, tmp_path: Path, after_commit: bool, prefetch: int
) -> None:
    events = truth(D, students=600)
    source = vendor_csv(tmp_path / "sessions.csv", events)
    cut = list(batches(source, converter(D)))
    assert len(cut) >= 4
    clean = other_ledger(tmp_path, "clean")
    try:
        run(clean, source, tmp_path / "clean.json")
        # Same positions, same events (decrypted): the hashes differ, since every ledger
        # draws its own student tokens, keys and nonces.
        expected = (chain_head(clean, D)[0], events_in_order(clean, D))
    finally:
        clean.close()
    report_path = tmp_path / "report.json"
    with pytest.raises(Crash):
        SessionImport(CrashingLedger(ledger, 3, after_commit), source, converter(D),
                      report_path, prefetch_min_bytes=prefetch).run()  # fmt: skip
    state = json.loads(report_path.with_name("report.json.state").read_text())
    assert state["offset"] > 0 and state["accepted"] > 0
    resumed = SessionImport(ledger, source, converter(D), report_path,
                            prefetch_min_bytes=prefetch).run()  # fmt: skip
    assert (chain_head(ledger, D)[0], events_in_order(ledger, D)) == expected
    counts = resumed["events"]
    assert counts["accepted"] + counts["duplicate"] == len(events)
    # Recorded but not checkpointed before the crash: back as duplicates on resume.
    assert counts["duplicate"] == (len(cut[2].events) if after_commit else 0)
    assert resumed["runs"] == 2


@given(st.text(max_size=300))
def test_import_event_ids_are_the_stdlib_uuid5_of_the_same_name(name: str) -> None:
    """Imported event ids are what earlier imports wrote: re-importing a file after an
    upgrade must still find its events stored (duplicates, not new events)."""
    try:
        name.encode()
    except UnicodeEncodeError:  # lone surrogates: neither form can name an event
        return
    assert import_event_id(name) == str(uuid5(IMPORT_NAMESPACE, name))


def test_imported_events_name_the_provider_and_the_files_digest_in_the_chain(
    ledger: Ledger, tmp_path: Path
) -> None:
    import hashlib

    from tutorledger.infra.eventstore.audit import verify_chain

    events = truth(D)
    source = vendor_csv(tmp_path / "sessions.csv", events)
    job = SessionImport(ledger, source, converter(D), tmp_path / "r.json", provider="tutorcom")
    report = job.run()
    expected = {
        "format": 1,
        "via": "import",
        "provider": "tutorcom",
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
    }
    assert report["provenance"] == expected
    stored = [e for _, e in events_in_order(ledger, D)]
    assert len(stored) == len(events)
    assert all(e["provenance"] == expected for e in stored)
    assert verify_chain(ledger.recorder, ledger.mapper, D).ok
