"""Retention: students with no activity for the district's retention_years are listed, then
shredded with --apply; the ledger keeps every event and the chain."""

from __future__ import annotations

import json
from pathlib import Path

from builders import envelope
from typer.testing import CliRunner

from tutorledger.api.cli.main import app
from tutorledger.infra.eventstore.audit import verify_chain
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

D = "ret-d"


def requested(session: str, student: str, at: str) -> dict[str, object]:
    payload = {"school_id": "sch-1", "student_id": student, "grade": 4, "subject": "math"}
    return envelope(D, session, "requested", at, payload)


def test_retention_lists_then_shreds_only_the_inactive(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/l.db"
    districts = tmp_path / "districts.json"
    districts.write_text(json.dumps({D: {"retention_years": 2}}))
    ledger = open_ledger(Settings(event_store=store))
    ledger.record_events(
        [
            requested("s-1", "stu-2021", "2021-05-03T15:00:00+00:00"),
            requested("s-2", "stu-2023", "2023-09-12T15:00:00+00:00"),
            requested("s-3", "stu-both", "2021-01-04T15:00:00+00:00"),
            requested("s-4", "stu-both", "2025-02-03T15:00:00+00:00"),
            requested("s-5", "stu-2026", "2026-03-02T15:00:00+00:00"),
        ]
    )
    tokens = {s: ledger.index.find_student(D, s).token for s in ("stu-2021", "stu-2023")}  # type: ignore[union-attr]
    env = {"TUTORLEDGER_EVENT_STORE": store, "TUTORLEDGER_DISTRICTS_FILE": str(districts)}
    runner = CliRunner()
    listed = runner.invoke(app, ["retention", "--as-of", "2026-06-01"], env=env)
    assert listed.exit_code == 0, listed.output
    report = json.loads(listed.stdout.strip().splitlines()[-1])
    # Two years before 2026-06-01: the 2021 and 2023 students; stu-both came back in 2025.
    assert [s["student_token"] for s in report[0]["students"]] == [
        tokens["stu-2021"],
        tokens["stu-2023"],
    ]
    assert report[0]["shredded"] == 0
    assert ledger.index.find_student(D, "stu-2021") is not None  # listing changes nothing
    applied = runner.invoke(app, ["retention", "--as-of", "2026-06-01", "--apply"], env=env)
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout.strip().splitlines()[-1])[0]["shredded"] == 2
    assert ledger.index.find_student(D, "stu-2021") is None
    assert ledger.index.find_student(D, "stu-2023") is None
    assert all(ledger.index.find_student(D, s) for s in ("stu-both", "stu-2026"))
    keys = ledger.index.student_keys(list(tokens.values()))
    assert all(k.erased for k in keys.values())
    report = verify_chain(ledger.recorder, ledger.mapper, D)
    assert report.ok and report.checked == 7  # five requests and two erasures
    ledger.close()
