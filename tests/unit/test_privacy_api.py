"""Student privacy over HTTP: purpose required, disclosures recorded, export, erasure.

One app for the module (chdb holds one data dir per process); each test its own district.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import at_minute, role_keys, write_keys
from fastapi.testclient import TestClient

from tutorledger.api.app import create_app
from tutorledger.infra.logging import RedactStudentPaths
from tutorledger.infra.settings import Settings

KEYS = {
    "admin": "privacy-admin-key-000000000",
    "auditor": "privacy-auditor-key-0000000",
    "dashboard": "privacy-dashboard-key-00000",
    "emitter": "privacy-emitter-key-0000000",
}
WHY = {"X-Purpose": "parent request 2026-03-02"}
STUDENT, TOPIC, COMMENT = "stu-secret-4711", "Fractions QX7", "my teacher QZ9 was kind"


def auth(name: str, purpose: bool = True) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}", **(WHY if purpose else {})}


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("privacy")


@pytest.fixture(scope="module")
def client(app_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        event_store=f"sqlite:///{app_dir}/l.db",
        clickhouse=f"chdb://{app_dir}/ch",
        api_keys_file=write_keys(app_dir / "keys.json", role_keys(KEYS, "none")),
        var_dir=app_dir / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


def session_events(district: str, session: str, student: str = STUDENT) -> list[dict[str, Any]]:
    return [
        at_minute(district, session, "requested", 0, school_id="sch-1", student_id=student,
                  grade=5, subject="math", topic=TOPIC),
        at_minute(district, session, "matched", 1, tutor_id="tut-1"),
        at_minute(district, session, "completed", 20, outcome="resolved"),
        at_minute(district, session, "surveyed", 30, helped=True, rating=5, comment=COMMENT),
    ]  # fmt: skip


def post(client: TestClient, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post("/v1/events", json={"events": events}, headers=auth("emitter"))
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def disclosures(client: TestClient, district: str, student: str | None = None) -> Any:
    params = {"district_id": district, **({"student_id": student} if student else {})}
    response = client.get("/v1/privacy/disclosures", params=params, headers=auth("admin"))
    assert response.status_code == 200, response.text
    return response.json()


def new_district() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("suffix", ["", "/events"])
def test_student_reads_need_a_purpose(client: TestClient, suffix: str) -> None:
    d = new_district()
    post(client, session_events(d, "s-1"))
    url = f"/v1/sessions/{d}/s-1{suffix}"
    for blank in (auth("auditor", purpose=False), {**auth("auditor"), "X-Purpose": "  "}):
        response = client.get(url, headers=blank)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "purpose_required"
    assert disclosures(client, d)["disclosures"] == []
    # Auth and district come first: a wrong key is 401, not purpose_required.
    assert client.get(url).status_code == 401
    assert client.get(url, headers=auth("auditor")).status_code == 200


def test_each_student_level_read_is_recorded_and_aggregate_reads_are_not(
    client: TestClient,
) -> None:
    d = new_district()
    post(client, session_events(d, "s-1") + session_events(d, "s-2", student="stu-other"))
    for path in (f"/v1/sessions/{d}/s-1", f"/v1/sessions/{d}/s-1/events"):
        assert client.get(path, headers=auth("auditor")).status_code == 200
    for metric in ("participation", "demand", "engagement"):
        response = client.get(f"/v1/metrics/{metric}", params={"district_id": d},
                              headers=auth("dashboard"))  # fmt: skip
        assert response.status_code == 200
    body = disclosures(client, d)
    assert body["chain_ok"] is True
    rows = body["disclosures"]
    assert [r["endpoint"] for r in rows] == [
        "GET /v1/sessions/{district_id}/{session_id}",
        "GET /v1/sessions/{district_id}/{session_id}/events",
    ]
    (token,) = rows[0]["students"]
    assert all(r["students"] == [token] for r in rows)
    assert all(r["role"] == "auditor" and r["purpose"] == WHY["X-Purpose"] for r in rows)
    assert all(len(r["key_id"]) == 16 and KEYS["auditor"] not in str(r) for r in rows)
    assert STUDENT not in str(body)
    # The parent's question: only this student's disclosures.
    assert disclosures(client, d, STUDENT)["disclosures"] == rows
    assert disclosures(client, d, "stu-other")["disclosures"] == []


def test_export_json_and_csv_hold_every_event_decrypted_and_the_disclosures(
    client: TestClient,
) -> None:
    d = new_district()
    post(client, session_events(d, "s-1") + session_events(d, "s-2"))
    client.get(f"/v1/sessions/{d}/s-2", headers=auth("auditor"))
    url = f"/v1/privacy/students/{d}/{STUDENT}"
    assert client.get(url, headers=auth("auditor")).status_code == 403
    assert client.get(url, headers=auth("admin", purpose=False)).status_code == 422
    record = client.get(url, headers=auth("admin")).json()
    assert sorted(s["session_id"] for s in record["sessions"]) == ["s-1", "s-2"]
    firsts = [s["events"][0]["position"] for s in record["sessions"]]
    assert firsts == sorted(firsts)  # sessions in ledger order
    events = [e["event"] for s in record["sessions"] for e in s["events"]]
    assert len(events) == 8
    assert {e["payload"].get("topic") for e in events if e["type"] == "session.requested"} == {
        TOPIC
    }
    assert {e["payload"].get("comment") for e in events if e["type"] == "session.surveyed"} == {
        COMMENT
    }
    assert [x["endpoint"] for x in record["disclosures"]] == [
        "GET /v1/sessions/{district_id}/{session_id}",
        "GET /v1/privacy/students/{district_id}/{student_id}",
    ]
    text = client.get(url, params={"format": "csv"}, headers=auth("admin")).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["record"] for r in rows].count("event") == 8
    assert [r["record"] for r in rows].count("disclosure") == 3  # this export is the third
    assert COMMENT in text


def test_erasure_over_http(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    d = new_district()
    events = session_events(d, "s-1")
    post(client, events[:2])
    # Exact figures (an auditor): a dashboard reads published positions, not this instant.
    before = client.get("/v1/metrics/participation", params={"district_id": d},
                        headers=auth("auditor")).json()  # fmt: skip
    url = f"/v1/privacy/students/{d}/{STUDENT}/erase"
    assert (
        client.post(url, json={"reason": "parent_request"}, headers=auth("auditor")).status_code
        == 403
    )
    bad = client.post(url, json={"reason": "because Jane Doe asked"}, headers=auth("admin"))
    assert bad.status_code == 422
    with caplog.at_level(logging.DEBUG):
        response = client.post(url, json={"reason": "parent_request"}, headers=auth("admin"))
    assert response.status_code == 200, response.text
    erased = response.json()
    server_lines = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert not [line for line in server_lines if STUDENT in line]  # (httpx: the test's client)
    again = client.post(url, json={"reason": "parent_request"}, headers=auth("admin"))
    assert again.status_code == 404
    # Later steps of the session, and resends of its stored events, are refused.
    results = post(client, events)
    assert [r.get("error", {}).get("code") for r in results] == ["student_erased"] * 4
    after = client.get("/v1/metrics/participation", params={"district_id": d},
                       headers=auth("auditor")).json()  # fmt: skip
    figures = ("students_served", "sessions_requested", "sessions_matched")
    assert {k: after[k] for k in figures} == {k: before[k] for k in figures}
    assert after["as_of_position"] == erased["position"]
    history = client.get(f"/v1/sessions/{d}/s-1/events", headers=auth("auditor")).json()
    first = history["events"][0]
    assert first["erased"] == ["student_id", "topic"]
    assert "student_id" not in first["decrypted"]["payload"]
    assert first["event"]["payload"]["student_token"] == erased["student_token"]
    state = client.get(f"/v1/sessions/{d}/s-1", headers=auth("auditor")).json()
    assert state["student_id"] is None and state["topic"] is None
    assert state["erased"] == ["student_id", "topic"]
    verify = client.get("/v1/audit/verify", params={"district_id": d}, headers=auth("auditor"))
    assert verify.json()["ok"] is True
    assert (
        client.get(f"/v1/privacy/students/{d}/{STUDENT}", headers=auth("admin")).status_code == 404
    )


def test_access_log_lines_lose_the_student_id() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/v1/privacy/students/d-1/{STUDENT}?format=csv", "1.1", 200),
        None,
    )  # fmt: skip
    RedactStudentPaths().filter(record)
    assert STUDENT not in record.getMessage()
    assert "/v1/privacy/students/d-1/<student>" in record.getMessage()
