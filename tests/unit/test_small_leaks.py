"""The small leaks an attack review found, each closed: student ids in logs however the query
string spells them, formula cells in the privacy export, the Host header in the dashboard's
reproduce link, and bodies of unauthenticated writes read before the key was checked."""

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
from tutorledger.api.dashboard.session import COOKIE
from tutorledger.api.http import body_guard
from tutorledger.infra.logging import RedactStudentPaths  # noqa
from tutorledger.infra.settings import Settings

KEYS = {
    "admin": "leaks-admin-key-00000000000",
    "dashboard": "leaks-dashboard-key-0000000",
    "emitter": "leaks-emitter-key-000000000",
}
STUDENT = "stu-leak-8812"


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}", "X-Purpose": "leak test"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("leaks")
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}",
        api_keys_file=write_keys(tmp / "keys.json", role_keys(KEYS, "none")),
        var_dir=tmp / "var",
        session_secret="leaks-secret",
    )
    with TestClient(create_app(settings), base_url="http://dash.test") as c:
        yield c


# -- logs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/privacy/disclosures?district_id=d-1&student_id={STUDENT}",
        f"/v1/privacy/disclosures?district_id=d-1&student%5Fid={STUDENT}",
        f"/v1/privacy/disclosures?district_id=d-1&student%5fid={STUDENT}&x=1",
        f"/v1/privacy/disclosures?%73tudent_id={STUDENT}&district_id=d-1",
        f"/v1/privacy/students/d-1/{STUDENT}?format=csv",
        f"/v1/privacy/%73tudents/d-1/{STUDENT}",
    ],
)
def test_access_log_lines_lose_the_student_id_however_it_is_spelled(path: str) -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", path, "1.1", 200), None,
    )  # fmt: skip
    RedactStudentPaths().filter(record)
    line = record.getMessage()
    assert STUDENT not in line and "<student>" in line, line
    assert "district_id=d-1" in line or "/d-1/" in line  # the rest of the line is kept


def test_other_parameters_are_logged_as_sent() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, "", 0, "GET %s", ("/v1/x?session_id=s%5F1",), None
    )
    RedactStudentPaths().filter(record)
    assert record.getMessage() == "GET /v1/x?session_id=s%5F1"


# -- the privacy export's CSV -----------------------------------------------------------------


def test_the_privacy_export_csv_escapes_formula_cells(client: TestClient) -> None:
    district = f"p-{uuid.uuid4().hex[:8]}"
    session = "-A1"  # a valid session id, and a formula in a spreadsheet
    event = at_minute(district, session, "requested", 0, school_id="sch-1",
                      student_id=STUDENT, grade=5, subject="math")  # fmt: skip
    sent = client.post("/v1/events", json={"events": [event]}, headers=auth("emitter"))
    assert sent.json()["results"][0]["status"] == "accepted", sent.text
    url = f"/v1/privacy/students/{district}/{STUDENT}"
    text = client.get(url, params={"format": "csv"}, headers=auth("admin")).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][:2] == ["event", "'-A1"]
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


# -- the dashboard's reproduce link -----------------------------------------------------------


def test_the_reproduce_link_does_not_carry_the_host_header(client: TestClient) -> None:
    client.cookies.clear()
    signed = client.post("/signin", data={"key": KEYS["admin"]}, follow_redirects=False)
    assert signed.status_code == 303
    page = client.get("/dashboard/d-1", headers={"Host": "evil.example"})
    assert page.status_code == 200, page.text[:500]
    assert "evil.example" not in page.text
    assert 'id="reproduce" href="/dashboard/d-1?' in page.text
    client.cookies.delete(COOKIE)


# -- writes: the key before the body ----------------------------------------------------------


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every body the guard parses, in order."""
    seen: list[bytes] = []
    original = body_guard.check_json

    def counting(body: bytes) -> Any:
        seen.append(body)
        return original(body)

    monkeypatch.setattr(body_guard, "check_json", counting)
    return seen


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer API key"),
        ({"Authorization": "Bearer leaks-unknown-key-0000000"}, "unknown API key"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "missing bearer API key"),
    ],
)
def test_an_unauthenticated_write_is_refused_before_its_body_is_read(
    client: TestClient, parses: list[bytes], headers: dict[str, str], message: str
) -> None:
    body = b'{"events": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}"
    response = client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == {"code": "unauthorized", "message": message}
    assert response.headers["www-authenticate"] == "Bearer"
    assert parses == []
    huge = client.put("/v1/schools/d-1/s1", content=b"x" * (9 * 1024 * 1024), headers=headers)
    assert huge.status_code == 401  # not 413: nothing about the body is looked at
    assert parses == []


def test_a_known_key_gets_its_body_read_and_other_answers_are_unchanged(
    client: TestClient, parses: list[bytes]
) -> None:
    response = client.post("/v1/events", content=b"{not json", headers=auth("emitter"))
    assert response.status_code == 400 and parses == [b"{not json"]
    # A key of the wrong role is known: its body is read, and the route answers 403.
    assert client.post("/v1/events", json={}, headers=auth("dashboard")).status_code == 403
    # No route takes the method or path: still 405 / 404, key or not.
    assert client.delete("/v1/events").status_code == 405
    assert client.post("/v1/nowhere", json={}).status_code == 404
    # Dashboard forms are not API routes: sign-in still reads its form without a key.
    assert client.post("/signin", data={"key": "nope"}).status_code == 401
