"""End to end, as an auditor and an operator drive it: verify and rebuild over HTTP,
published figures reproduced with `as_of_position` and with `tutorledger replay`, and the
`verify` / `rebuild` / `reconcile` commands as real processes with their progress bars."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import installed
import pytest
from builders import envelope as raw_envelope
from builders import role_keys, write_keys
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tutorledger.api.app import create_app
from tutorledger.api.cli.main import app as cli
from tutorledger.api.http import routes
from tutorledger.api.metrics.registry import WITH_FILTERS
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.settings import Settings

pytestmark = pytest.mark.e2e

KEYS = {
    "admin": "audit-admin-key-0000000000",
    "admin_limited": "audit-admin-limited-key-00",
    "auditor": "audit-auditor-key-00000000",
    "auditor_limited": "audit-auditor-limited-key-",
    "dashboard": "audit-dashboard-key-000000",
    "emitter": "audit-emitter-key-00000000",
}
LIMITED = "limited-d"
T0 = datetime.fromisoformat("2026-03-02T16:05:00-05:00")


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}", "X-Purpose": "audit"}


@pytest.fixture
def settings(tmp_path: Path, chdb_dir: Path) -> Settings:
    return Settings(
        event_store=f"sqlite:///{tmp_path}/ledger.db",
        clickhouse=f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}",
        api_keys_file=write_keys(tmp_path / "keys.json", role_keys(KEYS, LIMITED)),
        var_dir=tmp_path / "var",
        projector_poll_seconds=0.05,
    )


@contextmanager
def served(settings: Settings) -> Iterator[TestClient]:
    """The API on these stores; chdb is closed again on exit (one chdb user at a time)."""
    with TestClient(create_app(settings)) as client:
        yield client


def envelope(
    district: str, session: str, kind: str, at: datetime, **payload: Any
) -> dict[str, Any]:
    return raw_envelope(district, session, kind, at.isoformat(), payload)


def requested(district: str, session: str, student: str, at: datetime = T0) -> dict[str, Any]:
    return envelope(district, session, "requested", at, school_id="sch-1", student_id=student,
                    grade=7, subject="algebra")  # fmt: skip


def post(client: TestClient, *events: dict[str, Any]) -> int:
    response = client.post("/v1/events", json={"events": list(events)}, headers=auth("admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert {r["status"] for r in body["results"]} == {"accepted"}, body
    return int(body["position"])


def put_school(client: TestClient, district: str, enrollment: dict[str, int], as_of: str) -> None:
    body = {"name": "School One", "enrollment": enrollment, "as_of": as_of}
    response = client.put(f"/v1/schools/{district}/sch-1", json=body, headers=auth("admin"))
    assert response.status_code == 200, response.text


def metric_names() -> list[str]:
    """Every registered metric that answers with the shared filters alone (outcomes needs
    terms and grades)."""
    return [m.name for m in WITH_FILTERS]


def metrics_at(client: TestClient, district: str, **params: Any) -> dict[str, Any]:
    answers = {}
    for name in metric_names():
        query = {"district_id": district, **params}
        response = client.get(f"/v1/metrics/{name}", params=query, headers=auth("auditor"))
        assert response.status_code == 200, (name, response.text)
        answers[name] = response.json()
    return answers


def verify(client: TestClient, district: str, key: str = "auditor") -> Any:
    return client.get("/v1/audit/verify", params={"district_id": district}, headers=auth(key))


# -- HTTP ------------------------------------------------------------------------------------


def test_verify_over_http_checks_roles_and_names_the_tampered_position(
    settings: Settings,
) -> None:
    with served(settings) as client:
        sessions = [f"s-{i}" for i in range(5)]
        post(client, *(requested("verify-d", s, f"stu-{i}") for i, s in enumerate(sessions)))
        post(client, requested("verify-other", "s-0", "stu-0"))
        history = client.get("/v1/sessions/verify-d/s-4/events", headers=auth("auditor")).json()

        body = verify(client, "verify-d").json()
        assert body["ok"] is True and body["checked"] == 5
        assert body["head_position"] == history["events"][-1]["position"]
        assert body["head_hash"] == history["events"][-1]["hash"]
        assert body["first_bad_position"] is None
        assert verify(client, "verify-d", "admin").status_code == 200
        for key in ("dashboard", "emitter", "auditor_limited"):
            response = verify(client, "verify-d", key)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "forbidden"
        assert client.get("/v1/audit/verify", params={"district_id": "verify-d"}).status_code == 401
        paths = client.get("/openapi.json").json()["paths"]
        assert "get" in paths["/v1/audit/verify"] and "post" in paths["/v1/admin/rebuild"]

        target = client.get("/v1/sessions/verify-d/s-2/events", headers=auth("auditor")).json()
        position = target["events"][0]["position"]
        with sqlite3.connect(settings.event_store.removeprefix("sqlite:///")) as db:
            select = "SELECT state FROM stored_events WHERE rowid=?"
            (state,) = db.execute(select, (position,)).fetchone()
            db.execute(
                "UPDATE stored_events SET state=? WHERE rowid=?",
                (bytes(state).replace(b"sch-1", b"sch-X"), position),  # the id itself is sealed
            )
        body = verify(client, "verify-d").json()
        assert body["ok"] is False
        assert body["first_bad_position"] == position and body["problem"] == "hash_mismatch"
        assert body["checked"] == 2
        assert verify(client, "verify-other").json()["ok"] is True


def test_published_figures_reproduce_over_http_and_with_replay(settings: Settings) -> None:
    d = "repro-audit"
    with served(settings) as client:
        put_school(client, d, {"7": 40}, "2026-02-01")
        post(
            client,
            requested(d, "s-1", "a"),
            envelope(d, "s-1", "matched", T0 + timedelta(minutes=2), tutor_id="t-1"),
            requested(d, "s-2", "b", T0 + timedelta(days=1)),
        )
        published = metrics_at(client, d)
        position = published["participation"]["as_of_position"]
        assert published["participation"]["sessions_requested"] == 2

        post(
            client,
            envelope(d, "s-1", "completed", T0 + timedelta(minutes=30), outcome="resolved"),
            envelope(d, "s-1", "surveyed", T0 + timedelta(minutes=31), helped=True, rating=4),
            requested(d, "s-3", "c", T0 + timedelta(days=2)),
            requested("repro-elsewhere", "s-1", "z"),
        )
        put_school(client, d, {"7": 80}, "2026-02-20")
        later = metrics_at(client, d)
        assert later["participation"]["as_of_position"] > position
        assert later["participation"] != published["participation"]

        again = metrics_at(client, d, as_of_position=position)
        assert again == published

    runner = CliRunner()
    env = {
        "TUTORLEDGER_EVENT_STORE": settings.event_store,
        "TUTORLEDGER_CLICKHOUSE": settings.clickhouse,
        "TUTORLEDGER_LOG_LEVEL": "WARNING",
    }
    result = runner.invoke(
        cli, ["replay", "--as-of-position", str(position), "--district", d], env=env
    )
    assert result.exit_code == 0, result.output
    replayed = json.loads(result.stdout)
    assert replayed["as_of_position"] == position
    assert replayed["head_hash"] == published["participation"]["head_hash"]
    assert set(replayed["metrics"]) == set(published)
    assert replayed["metrics"] == published

    args = ["replay", "--as-of-position", str(position), "--format", "csv"]
    result = runner.invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "district_id,as_of_position,head_hash,metric,figure,value"
    head_hash = published["participation"]["head_hash"]
    assert f"{d},{position},{head_hash},participation,students_served,2" in lines
    assert not any(line.startswith("repro-elsewhere,") for line in lines)  # not there yet at P


def test_admin_rebuild_over_http_never_serves_a_half_built_table(settings: Settings) -> None:
    ledger = open_ledger(settings)
    district = generate(DistrictSpec(district_id="rebuild-d", students=800, days=7, seed=2))
    ledger.put_school("rebuild-d", "sch-01", "One", {"5": 900}, date(2026, 9, 1))
    for i in range(0, len(district.events), 1000):
        ledger.record_events(district.events[i : i + 1000])
    head = int(ledger.recorder.max_notification_id())
    ledger.close()

    with served(settings) as client:
        params = {"district_id": "rebuild-d"}
        url = "/v1/metrics/participation"
        before = client.get(url, params=params, headers=auth("auditor")).json()
        assert before["as_of_position"] == head
        seen: list[tuple[int, Any]] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                # Exact figures: a dashboard answer costs four (docs/privacy.md), and this
                # wants many reads while the rebuild runs.
                response = client.get(url, params=params, headers=auth("auditor"))
                seen.append((response.status_code, response.json()))

        readers = [threading.Thread(target=read) for _ in range(2)]
        for reader in readers:
            reader.start()
        try:
            response = client.post("/v1/admin/rebuild", headers=auth("admin"))
        finally:
            stop.set()
            for reader in readers:
                reader.join()
        assert response.status_code == 200, response.text
        assert response.json()["events"] >= head and response.json()["position"] >= head
        assert len(seen) > 5
        assert all(status == 200 for status, _ in seen), {s for s, _ in seen}
        assert all(body == before for _, body in seen)

        # The projector resumed on the new table: a new event shows up.
        post(client, requested("rebuild-d", "after-rebuild", "new-student", T0))
        after = client.get(url, params=params, headers=auth("auditor")).json()
        assert after["sessions_requested"] == before["sessions_requested"] + 1

        for key in ("auditor", "admin_limited"):
            denied = client.post("/v1/admin/rebuild", headers=auth(key))
            assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
        lock = routes.admin._rebuilding
        with lock:
            busy = client.post("/v1/admin/rebuild", headers=auth("admin"))
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "rebuild_in_progress"


# -- the commands, as processes ----------------------------------------------------------------


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed.cli()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_verify_rebuild_reconcile_with_progress_and_exit_codes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTORLEDGER_")}
    env.update(
        TUTORLEDGER_EVENT_STORE=f"sqlite:///{tmp_path}/ledger.db",
        TUTORLEDGER_CLICKHOUSE=f"chdb://{tmp_path}/projections",  # a chdb dir of its own
        TUTORLEDGER_VAR_DIR=str(tmp_path / "var"),
        TUTORLEDGER_LOG_LEVEL="WARNING",
        COLUMNS="160",
        NO_COLOR="1",
    )
    loaded = run(env, "demo", "--students", "1500", "--days", "10")
    assert loaded.returncode == 0, loaded.stderr
    demo = json.loads(loaded.stdout)
    # + the schools' enrolment events, each roster group's update and the roster's `all`
    events = demo["accepted"] + 8 + demo["roster"]["groups"] + 1

    checked = run(env, "verify")
    assert checked.returncode == 0, checked.stderr
    body = json.loads(checked.stdout)
    assert body["ok"] is True and body["checked"] == events
    assert "verifying chain" in checked.stderr and f"{events}/{events}" in checked.stderr
    assert "ev/s" in checked.stderr

    rebuilt = run(env, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["events"] == events
    assert "rebuilding projections" in rebuilt.stderr and f"{events}/{events}" in rebuilt.stderr

    clean = run(env, "reconcile", "--format", "json")
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["ok"] and report["ledger_events"] == report["projected_events"] == events

    # Delete one event outright, the way someone hiding it would.
    victim = events // 2
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        (state,) = db.execute("SELECT state FROM stored_events WHERE rowid=?", (victim,)).fetchone()
        db.execute("DELETE FROM stored_events WHERE rowid=?", (victim,))
        db.execute("DELETE FROM ledger_index WHERE position=?", (victim,))
    day = json.loads(state)["envelope"]["occurred_at"][:10]

    broken = run(env, "verify", "--district", "demo-district")
    assert broken.returncode == 1
    body = json.loads(broken.stdout)
    assert body["ok"] is False and body["first_bad_position"] == victim + 1
    assert f"chain broken at position {victim + 1}" in broken.stderr

    drift = run(env, "reconcile")
    assert drift.returncode == 1
    assert "demo-district" in drift.stderr and day in drift.stderr  # the drift table
    assert drift.stdout.startswith("DRIFT")
