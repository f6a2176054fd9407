"""Invoice reconciliation finds every planted kind of mismatch: billed but not recorded (an
unknown session, an unknown student, no session at that time, a cancelled session, one never
completed, a session billed twice), recorded but not billed, minute differences beyond the
tolerance (and not within it); totals add up. Only the report's digest is recorded, in the
audit log; a malformed row is named by line and nothing is recorded. Student ids never
reach the report."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from builders import envelope
from typer.testing import CliRunner

from tutorledger.api.cli.main import app as cli
from tutorledger.consumers.invoices import recorded_provider, recorded_sessions
from tutorledger.domain.ledger import Ledger
from tutorledger.infra.eventstore.audit_log import AuditLog
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

D = "inv-1"
DAY = "2026-03-02"
STUDENT_SECRET = "student-7f3a-do-not-print"  # billed by time; must never show in output


def at(clock: str, day: str = DAY) -> str:
    return f"{day}T{clock}:00+00:00"


def requested(district: str, session: str, clock: str, student: str, day: str = DAY) -> Any:
    payload = {"school_id": "sch-1", "student_id": student, "grade": 5, "subject": "math"}
    return envelope(district, session, "requested", at(clock, day), payload)


def lifecycle(
    session: str, student: str, times: tuple[str, str, str | None], district: str = D,
    day: str = DAY, cancelled: bool = False,
) -> list[Any]:  # fmt: skip
    """requested, matched, then completed (or cancelled) at the given UTC clock times."""
    asked, matched, ended = times
    events = [requested(district, session, asked, student, day)]
    if cancelled:
        return [*events, envelope(district, session, "cancelled", at(matched, day),
                                  {"reason": "student_left"})]  # fmt: skip
    events.append(envelope(district, session, "matched", at(matched, day), {"tutor_id": "t-1"}))
    if ended is not None:
        events.append(envelope(district, session, "completed", at(ended, day), {}))
    return events


SESSIONS = [
    *lifecycle("S1", "st-1", ("09:00", "09:05", "09:35")),  # 30 min, billed right
    *lifecycle("S2", "st-2", ("10:00", "10:00", "10:45")),  # 45 min, billed 60
    *lifecycle("S3", STUDENT_SECRET, ("11:00", "11:00", "11:20")),  # 20 min, billed by time, 22
    *lifecycle("S4", "st-4", ("12:00", "12:00", "12:30")),  # never billed
    *lifecycle("S5", "st-5", ("13:00", "13:10", None), cancelled=True),  # billed, cancelled
    *lifecycle("S6", "st-6", ("14:00", "14:05", None)),  # billed, never completed
    *lifecycle("S7", "st-1", ("09:00", "09:00", "09:30"), district="inv-2"),  # another district
    *lifecycle("S8", "st-4", ("09:00", "09:00", "09:30"), day="2026-03-20"),  # outside the period
]
INVOICE = f"""session_id,billed_at,student_id,minutes,amount
S1,,,30,25.00
S2,,,60,50.00
,{DAY}T11:02:00+00:00,{STUDENT_SECRET},22,18.50
S5,,,30,25.00
S6,,,30,25.00
S99,,,30,25.00
S1,,,30,25.00
,{DAY}T09:00:00+00:00,st-unknown,30,25.00
,{DAY}T16:00:00+00:00,st-1,30,25.00
S7,,,30,25.00
"""


@dataclass
class World:
    settings: Settings
    ledger: Ledger
    tmp: Path

    def env(self) -> dict[str, str]:
        return {"TUTORLEDGER_EVENT_STORE": self.settings.event_store,
                "TUTORLEDGER_DISTRICT_TZ": "UTC", "TUTORLEDGER_LOG_LEVEL": "WARNING"}  # fmt: skip

    def audit(self) -> list[dict[str, Any]]:
        return AuditLog(self.ledger.recorder).records(D, "reconcile_invoice")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(event_store=f"sqlite:///{tmp_path}/l.db", district_tz="UTC")
    ledger = open_ledger(settings)
    outcomes = ledger.record_events(SESSIONS)
    assert all(o.status == "accepted" for o in outcomes), outcomes
    try:
        yield World(settings, ledger, tmp_path)
    finally:
        ledger.close()


def reconcile(world: World, text: str, *extra: str, name: str = "invoice.csv") -> Any:
    source = world.tmp / name
    source.write_text(text)
    args = ["reconcile-invoice", str(source), "--provider", "acme", "--district", D,
            "--tolerance-minutes", "5", *extra]  # fmt: skip
    return CliRunner().invoke(cli, args, env=world.env())


def test_every_kind_of_mismatch_is_found_and_only_the_digest_is_kept(world: World) -> None:
    done = reconcile(world, INVOICE)
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    why = {(r["line"], r["session_id"]): r["reason"] for r in body["billed_not_recorded"]}
    assert why == {
        (5, "S5"): "cancelled",
        (6, "S6"): "not_completed",
        (7, "S99"): "unknown_session",
        (8, "S1"): "billed_twice",
        (9, None): "unknown_student",
        (10, None): "no_session_at_time",
        (11, "S7"): "unknown_session",  # another district's session is not this one's
    }
    assert [r["session_id"] for r in body["recorded_not_billed"]] == ["S4"]  # not S8: period
    assert body["recorded_not_billed"][0]["minutes"] == "30.00"
    (diff,) = body["minute_differences"]  # S3's 22 against 20 is within the tolerance
    assert (diff["session_id"], diff["line"], diff["difference"]) == ("S2", 3, "15.00")
    totals = body["totals"]
    assert totals["billed"] == {"sessions": 10, "minutes": "322", "amount": "268.50"}
    assert totals["matched"] == {"sessions": 3, "amount": "93.50"}  # S1, S2, S3
    assert totals["billed_not_recorded"] == {"sessions": 7, "amount": "175.00"}
    assert totals["recorded"] == {"sessions": 4, "minutes": "125.00"}  # S1-S4 completed
    assert body["period"] == {"from": DAY, "to": DAY}
    assert STUDENT_SECRET not in done.output and "st-unknown" not in done.output
    (record,) = world.audit()
    assert record["report_sha256"] == body["report_sha256"] and record["provider"] == "acme"
    assert set(record) == {"seq", "at", "action", "provider", "source", "source_sha256",
                           "as_of_position", "report_sha256"}  # fmt: skip


def test_the_digest_is_over_the_report_so_a_changed_report_shows(world: World) -> None:
    body = json.loads(reconcile(world, INVOICE).stdout)
    digest = body.pop("report_sha256")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == digest
    body["totals"]["billed"]["amount"] = "1.00"
    changed = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(changed.encode()).hexdigest() != digest


def test_an_explicit_period_and_csv_output(world: World) -> None:
    out = world.tmp / "report.csv"
    done = reconcile(world, INVOICE, "--from", DAY, "--to", "2026-03-31", "--format", "csv",
                     "--out", str(out))  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    kinds = [r["kind"] for r in rows]
    assert kinds.count("billed_not_recorded") == 7 and kinds.count("minute_difference") == 1
    unbilled = [r["session_id"] for r in rows if r["kind"] == "recorded_not_billed"]
    assert unbilled == ["S4", "S8"]  # S8's day is now in the period
    totals = {r["reason"]: r for r in rows if r["kind"] == "total"}
    assert totals["billed"]["amount"] == "268.50" and totals["recorded"]["sessions"] == "5"


def test_ndjson_through_a_mapping(world: World) -> None:
    mapping = world.tmp / "acme.toml"
    mapping.write_text(
        'format = "ndjson"\ntime_zone = "America/New_York"\nsession_prefix = "S"\n'
        '[columns]\nsession_id = "ref"\nbilled_at = "start"\nstudent_id = "learner.id"\n'
        'minutes = "mins"\namount = "cost"\n'
    )
    lines = [{"ref": "1", "mins": 30, "cost": "25"},
             {"start": "2026-03-02 06:01:00", "learner": {"id": STUDENT_SECRET}, "mins": 20,
              "cost": "18.5"}]  # fmt: skip  # 06:01 New York = 11:01 UTC: session S3
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    done = reconcile(world, text, "--mapping", str(mapping), name="invoice.ndjson")
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert body["billed_not_recorded"] == [] and body["minute_differences"] == []
    assert body["totals"]["matched"]["sessions"] == 2
    assert [r["session_id"] for r in body["recorded_not_billed"]] == ["S2", "S4"]


def test_a_malformed_row_is_named_by_line_and_nothing_is_recorded(world: World) -> None:
    text = INVOICE.replace("S2,,,60,50.00", "S2,,,sixty,50.00").replace(
        "S6,,,30,25.00", ",,,30,25.00")  # fmt: skip
    done = reconcile(world, text)
    assert done.exit_code == 1
    assert "invoice.csv:3 [minutes] minutes is not a number" in done.output
    assert "invoice.csv:6" in done.output and "neither a session id" in done.output
    assert "invalid_invoice" in done.output
    assert world.audit() == []


def test_the_provider_seam_keeps_only_that_providers_sessions(world: World) -> None:
    """Once events name a provider, another provider's sessions drop out (S4 here); a
    session is its request's provider's (S1's later events naming another do not count)."""
    named = {("S4", "session.requested"): "other", ("S1", "session.requested"): "acme",
             ("S1", "session.completed"): "other"}  # fmt: skip

    def provider_of(e: Any) -> str | None:
        return named.get((e["session_id"], e["type"]))

    kept, upto = recorded_sessions(world.ledger.recorder, world.ledger.mapper, D, "acme",
                                   provider_of)  # fmt: skip
    assert sorted(s.session_id for s in kept) == ["S1", "S2", "S3", "S5", "S6", "S8"]
    assert upto == len(SESSIONS)


def test_a_sessions_provider_is_read_from_its_stored_provenance() -> None:
    assert recorded_provider({"provenance": {"via": "api", "provider": "acme"}}) == "acme"
    assert recorded_provider({"provenance": {"via": "api", "key_id": "0" * 16}}) is None
    assert recorded_provider({"type": "session.requested"}) is None  # before provenance
    assert recorded_provider({"provenance": "acme"}) is None
