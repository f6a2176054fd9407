"""The HTTP API through FastAPI's TestClient, on a real SQLite ledger and an embedded chdb.

chdb holds one data dir per process, so the whole module shares ONE app (module-scoped
fixture); every test writes to its own district ids so tests stay independent.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import FIGURES, envelope, role_keys, write_keys
from fastapi.testclient import TestClient

from tutorledger.api.app import create_app
from tutorledger.infra.settings import Settings

KEYS = {
    "admin": "admin-key-0000000000000000",
    "emitter": "emitter-key-00000000000000",
    "dashboard": "dashboard-key-000000000000",
    "auditor": "auditor-key-00000000000000",
    "emitter_limited": "emitter-limited-key-000000",
    "dashboard_limited": "dashboard-limited-key-0000",
    "auditor_limited": "auditor-limited-key-000000",
    "admin_limited": "admin-limited-key-00000000",
}
LIMITED_DISTRICT = "limited-d"
ROLES = ("emitter", "dashboard", "auditor", "admin")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _keys_file(path: Path) -> Path:
    specs = role_keys(KEYS, LIMITED_DISTRICT)
    # One entry given only by its digest, as production keys files are.
    specs.append(
        {
            "key_sha256": hashlib.sha256(b"hashed-dashboard-key-0000").hexdigest(),
            "role": "dashboard",
            "districts": ["*"],
        }
    )
    return write_keys(path, specs)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("api")
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{tmp}/ch",
        api_keys_file=_keys_file(tmp / "keys.json"),
        var_dir=tmp / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


PURPOSE = {"X-Purpose": "unit test"}  # session reads need one (tests/unit/test_privacy_api.py)


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}", **PURPOSE}


ADMIN = {"Authorization": f"Bearer {KEYS['admin']}", **PURPOSE}


# -- envelopes -------------------------------------------------------------------------------

T0 = datetime.fromisoformat("2026-03-02T16:05:00-05:00")


def env(
    district: str,
    session: str,
    kind: str,
    at: datetime,
    payload: dict[str, Any],
    event_id: str | None = None,
) -> dict[str, Any]:
    return envelope(district, session, kind, at.isoformat(), payload, event_id)


def requested(
    district: str,
    session: str,
    at: datetime = T0,
    *,
    school: str = "sch-1",
    student: str = "stu-1",
    grade: int = 7,
    subject: str = "algebra",
    **extra: Any,
) -> dict[str, Any]:
    payload = {"school_id": school, "student_id": student, "grade": grade, "subject": subject}
    payload.update(extra)
    return env(district, session, "requested", at, payload)


def matched(district: str, session: str, at: datetime, tutor: str = "tut-1") -> dict[str, Any]:
    return env(district, session, "matched", at, {"tutor_id": tutor})


def completed(
    district: str, session: str, at: datetime, outcome: str = "resolved"
) -> dict[str, Any]:
    return env(district, session, "completed", at, {"outcome": outcome})


def surveyed(district: str, session: str, at: datetime, **payload: Any) -> dict[str, Any]:
    return env(district, session, "surveyed", at, payload or {"helped": True, "rating": 5})


def cancelled(district: str, session: str, at: datetime, reason: str = "timeout") -> dict[str, Any]:
    return env(district, session, "cancelled", at, {"reason": reason})


def post(client: TestClient, body: Any, key: str = "admin") -> Any:
    return client.post("/v1/events", json=body, headers=auth(key))


def post_ok(client: TestClient, *events: dict[str, Any]) -> dict[str, Any]:
    response = post(client, {"events": list(events)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert [r["status"] for r in body["results"]] == ["accepted"] * len(events), body
    return body


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) <= {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code, error
    return error


def head_position(client: TestClient) -> int:
    body = client.get("/readyz", headers=ADMIN).json()
    return int(body["checks"]["event_store"]["head_position"])


def session_status(client: TestClient, district: str, session: str) -> int:
    return client.get(f"/v1/sessions/{district}/{session}", headers=ADMIN).status_code


def participation(client: TestClient, key: str = "auditor", **params: Any) -> dict[str, Any]:
    """Exact figures (an auditor key): these tests use districts far below the dashboard's
    suppression threshold (tests/unit/test_suppression.py covers what dashboards see)."""
    response = client.get("/v1/metrics/participation", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def figures(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in FIGURES}


# -- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/v1/events"),
        ("GET", "/v1/metrics/participation?district_id=authn"),
        ("GET", "/v1/schools?district_id=authn"),
        ("PUT", "/v1/schools/authn/sch-1"),
        ("GET", "/v1/sessions/authn/s-1"),
        ("GET", "/v1/sessions/authn/s-1/events"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-known-key-at-all"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": KEYS["admin"]},  # no scheme
    ],
    ids=["no-key", "unknown-key", "empty-key", "basic-auth", "no-scheme"],
)
def test_missing_or_unknown_key_is_401(
    client: TestClient, method: str, url: str, headers: dict[str, str]
) -> None:
    body: Any = None
    if method == "POST":
        body = requested("authn", "s-1")
    elif method == "PUT":
        body = {"name": "x", "enrollment": {"1": 1}, "as_of": "2026-01-01"}
    before = head_position(client)
    response = client.request(method, url, json=body, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert head_position(client) == before


def test_key_given_by_digest_authenticates(client: TestClient) -> None:
    headers = {"Authorization": "Bearer hashed-dashboard-key-0000"}
    response = client.get("/v1/schools", params={"district_id": "digest-d"}, headers=headers)
    assert response.status_code == 200, response.text


# -- authorisation: role ---------------------------------------------------------------------

FAMILIES = ("emit", "metrics", "schools_read", "schools_write", "session", "session_events")
ALLOWED = {
    "emitter": {"emit"},
    "dashboard": {"metrics", "schools_read"},
    "auditor": {"metrics", "schools_read", "session", "session_events"},
    "admin": set(FAMILIES),
}


def call_family(client: TestClient, family: str, key: str, district: str) -> Any:
    headers = auth(key)
    if family == "emit":
        body = requested(district, f"s-{uuid.uuid4().hex[:8]}")
        return client.post("/v1/events", json=body, headers=headers)
    if family == "metrics":
        params = {"district_id": district}
        return client.get("/v1/metrics/participation", params=params, headers=headers)
    if family == "schools_read":
        return client.get("/v1/schools", params={"district_id": district}, headers=headers)
    if family == "schools_write":
        body = {"name": "Authz School", "enrollment": {"7": 10}, "as_of": "2026-01-01"}
        return client.put(f"/v1/schools/{district}/sch-1", json=body, headers=headers)
    if family == "session":
        return client.get(f"/v1/sessions/{district}/s-authz", headers=headers)
    assert family == "session_events"
    return client.get(f"/v1/sessions/{district}/s-authz/events", headers=headers)


@pytest.fixture(scope="module")
def authz_districts(client: TestClient) -> list[str]:
    """Districts (one of them the limited keys' district) each holding session s-authz."""
    districts = ["authz", LIMITED_DISTRICT]
    for district in districts:
        post_ok(client, requested(district, "s-authz"))
    return districts


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(
    client: TestClient, authz_districts: list[str], role: str, family: str
) -> None:
    response = call_family(client, family, role, "authz")
    if family in ALLOWED[role]:
        assert response.status_code == 200, response.text
        if family == "emit":
            assert response.json()["results"][0]["status"] == "accepted"
    else:
        assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("role", ROLES)
def test_limited_key_inside_its_district(
    client: TestClient, authz_districts: list[str], role: str, family: str
) -> None:
    response = call_family(client, family, f"{role}_limited", LIMITED_DISTRICT)
    if family in ALLOWED[role]:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("role", ROLES)
def test_limited_key_outside_its_district_is_403(
    client: TestClient, authz_districts: list[str], role: str, family: str
) -> None:
    before = head_position(client)
    response = call_family(client, family, f"{role}_limited", "authz")
    assert_error(response, 403, "forbidden")
    assert head_position(client) == before


def test_batch_with_one_foreign_district_event_is_403_and_stores_nothing(
    client: TestClient,
) -> None:
    before = head_position(client)
    batch = [
        requested(LIMITED_DISTRICT, "s-mixed-1"),
        requested(LIMITED_DISTRICT, "s-mixed-2"),
        requested("other-district", "s-mixed-3"),
    ]
    assert_error(post(client, {"events": batch}, "emitter_limited"), 403, "forbidden")
    assert head_position(client) == before
    assert session_status(client, LIMITED_DISTRICT, "s-mixed-1") == 404
    assert session_status(client, LIMITED_DISTRICT, "s-mixed-2") == 404
    assert session_status(client, "other-district", "s-mixed-3") == 404
    # The same batch without the foreign event goes through.
    body = post(client, {"events": batch[:2]}, "emitter_limited").json()
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted"]


# -- POST /v1/events -------------------------------------------------------------------------


def test_post_single_envelope(client: TestClient) -> None:
    event = requested("single-d", "s-1")
    response = post(client, event, "emitter")
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 1
    result = body["results"][0]
    assert result["event_id"] == event["event_id"]
    assert result["status"] == "accepted"
    assert "error" not in result
    assert isinstance(body["position"], int) and body["position"] > 0
    # Re-sent: stored once, reported as a duplicate at the same position.
    again = post(client, event, "emitter").json()
    assert again["results"][0]["status"] == "duplicate"
    assert again["results"][0]["event_id"] == event["event_id"]
    assert again["results"][0]["position"] == result["position"] == body["position"]
    history = client.get("/v1/sessions/single-d/s-1/events", headers=ADMIN).json()
    assert len(history["events"]) == 1


def test_batch_results_in_request_order_with_each_rejection_code(client: TestClient) -> None:
    d = "batch-d"
    first = requested(d, "s-1", T0)
    post_ok(client, first, requested(d, "s-cancel", T0))
    post_ok(client, cancelled(d, "s-cancel", T0 + timedelta(minutes=3)))
    conflict = dict(first, payload={**first["payload"], "grade": 8})
    naive = matched(d, "s-1", T0 + timedelta(minutes=1))
    naive["occurred_at"] = "2026-03-02T16:06:00"
    batch = [
        matched(d, "s-1", T0 + timedelta(minutes=2)),  # accepted
        first,  # duplicate (stored by an earlier request)
        naive,  # invalid_event: no offset
        {"event_id": str(uuid.uuid4()), "type": "session.exploded"},  # invalid_event
        matched(d, "s-nobody", T0),  # unknown_session
        surveyed(d, "s-1", T0 + timedelta(minutes=5)),  # invalid_transition (not completed)
        completed(d, "s-1", T0 + timedelta(minutes=1)),  # timestamp_regression
        matched(d, "s-1", T0 + timedelta(minutes=4), tutor="tut-2"),  # already_recorded
        conflict,  # event_id_conflict
        completed(d, "s-cancel", T0 + timedelta(minutes=9)),  # invalid_transition
        requested(d, "s-2", T0),  # accepted
        requested(d, "s-bad-grade", T0, grade=13),  # invalid_event
        requested(d, "s-extra", T0, favourite_colour="blue"),  # invalid_event (unknown field)
        completed(d, "s-1", T0 + timedelta(minutes=30)),  # accepted
    ]
    batch.append(dict(batch[-1]))  # in-batch resend: duplicate
    response = post(client, {"events": batch}, "emitter")
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    expected = [
        ("accepted", None),
        ("duplicate", None),
        ("rejected", "invalid_event"),
        ("rejected", "invalid_event"),
        ("rejected", "unknown_session"),
        ("rejected", "invalid_transition"),
        ("rejected", "timestamp_regression"),
        ("rejected", "already_recorded"),
        ("rejected", "event_id_conflict"),
        ("rejected", "invalid_transition"),
        ("accepted", None),
        ("rejected", "invalid_event"),
        ("rejected", "invalid_event"),
        ("accepted", None),
        ("duplicate", None),
    ]
    got = [(r["status"], r.get("error", {}).get("code")) for r in results]
    assert got == expected
    assert [r["event_id"] for r in results] == [e.get("event_id") for e in batch]
    for r in results:
        if r["status"] == "rejected":
            assert isinstance(r["error"]["message"], str) and r["error"]["message"]
        else:
            assert "error" not in r
    accepted_positions = [r["position"] for r in results if r["status"] == "accepted"]
    assert all(isinstance(p, int) for p in accepted_positions)
    assert len(set(accepted_positions)) == len(accepted_positions)
    assert body["position"] == max(accepted_positions)
    assert results[-1]["position"] == results[-2]["position"]  # the in-batch resend
    # Rejections changed nothing: s-1 went requested -> matched -> completed only.
    history = client.get(f"/v1/sessions/{d}/s-1/events", headers=ADMIN).json()
    assert [h["event"]["type"] for h in history["events"]] == [
        "session.requested",
        "session.matched",
        "session.completed",
    ]
    state = client.get(f"/v1/sessions/{d}/s-1", headers=ADMIN).json()
    assert state["status"] == "completed"
    assert state["tutor_id"] == "tut-1"
    assert state["grade"] == 7
    assert client.get(f"/v1/sessions/{d}/s-cancel", headers=ADMIN).json()["status"] == "cancelled"
    for sid in ("s-nobody", "s-bad-grade", "s-extra"):
        assert session_status(client, d, sid) == 404


def test_resend_in_another_representation_is_a_duplicate(client: TestClient) -> None:
    """Same event, offset given in UTC and subject in capitals: the same canonical body."""
    event = requested("repr-d", "s-1", T0, subject="Algebra")
    first = post_ok(client, event)["results"][0]
    resend = dict(event, occurred_at="2026-03-02T21:05:00Z")
    resend["payload"] = {**event["payload"], "subject": "ALGEBRA"}
    result = post(client, resend).json()["results"][0]
    assert result["status"] == "duplicate", result
    assert result["position"] == first["position"]


def test_empty_batch_stores_nothing(client: TestClient) -> None:
    before = head_position(client)
    body = post(client, {"events": []}).json()
    assert body["results"] == []
    assert body["position"] == before
    assert head_position(client) == before


def test_batch_over_1000_is_422_and_stores_nothing(client: TestClient) -> None:
    before = head_position(client)
    batch = [requested("big-d", f"s-{i}", student=f"stu-{i}") for i in range(1001)]
    assert_error(post(client, {"events": batch}), 422)
    assert head_position(client) == before
    assert session_status(client, "big-d", "s-0") == 404
    # Exactly 1000 is fine.
    body = post(client, {"events": batch[:1000]}).json()
    assert len(body["results"]) == 1000
    assert {r["status"] for r in body["results"]} == {"accepted"}


@pytest.mark.parametrize(
    "raw",
    [b'{"events": [', b"not json at all", b'{"event_id": "x",}', b"\xff\xfe"],
    ids=["truncated", "text", "trailing-comma", "not-utf8"],
)
def test_malformed_json_is_400_and_stores_nothing(client: TestClient, raw: bytes) -> None:
    before = head_position(client)
    response = client.post(
        "/v1/events",
        content=raw,
        headers={**auth("emitter"), "Content-Type": "application/json"},
    )
    assert_error(response, 400)
    assert head_position(client) == before


@pytest.mark.parametrize(
    "body",
    [
        [{"placeholder": True}],
        {"events": "not-a-list"},
        "a string",
        42,
        None,
    ],
    ids=["list", "events-not-list", "string", "number", "null"],
)
def test_body_of_wrong_shape_is_422_and_stores_nothing(client: TestClient, body: Any) -> None:
    if isinstance(body, list):
        body = [requested("shape-d", "s-1")]
    before = head_position(client)
    response = client.post("/v1/events", content=json.dumps(body), headers={
        **auth("emitter"), "Content-Type": "application/json"
    })  # fmt: skip
    assert_error(response, 422)
    assert head_position(client) == before
    assert session_status(client, "shape-d", "s-1") == 404


def test_batch_with_extra_top_level_key_is_422(client: TestClient) -> None:
    before = head_position(client)
    batch = [requested("extra-key-d", "s-1"), requested("extra-key-d", "s-2")]
    response = post(client, {"events": batch, "batch_id": "b-1"}, "emitter")
    assert head_position(client) == before
    assert session_status(client, "extra-key-d", "s-1") == 404
    assert_error(response, 422)


# -- sessions --------------------------------------------------------------------------------


def test_session_state_and_history(client: TestClient) -> None:
    d = "state-d"
    events = [
        requested(d, "s-1", T0, school="ms-12", student="st-8841", grade=7, subject="Geometry",
                  topic="triangles"),
        matched(d, "s-1", T0 + timedelta(seconds=90), tutor="tut-9"),
        completed(d, "s-1", T0 + timedelta(seconds=90 + 1500), outcome="partial"),
        surveyed(d, "s-1", T0 + timedelta(hours=2), helped=True, rating=4, comment="good"),
    ]  # fmt: skip
    post_ok(client, events[0])
    state = client.get(f"/v1/sessions/{d}/s-1", headers=auth("auditor")).json()
    assert state["status"] == "requested"
    assert state["wait_seconds"] is None and state["duration_seconds"] is None
    assert state["survey"] is None
    post_ok(client, *events[1:])
    response = client.get(f"/v1/sessions/{d}/s-1", headers=auth("auditor"))
    assert response.status_code == 200, response.text
    state = response.json()
    assert state["district_id"] == d and state["session_id"] == "s-1"
    assert state["status"] == "surveyed"
    assert state["school_id"] == "ms-12"
    assert state["student_id"] == "st-8841"
    assert state["grade"] == 7
    assert state["subject"] == "geometry"
    assert state["topic"] == "triangles"
    assert state["tutor_id"] == "tut-9"
    assert state["outcome"] == "partial"
    assert state["wait_seconds"] == pytest.approx(90.0)
    assert state["duration_seconds"] == pytest.approx(1500.0)
    assert state["survey"] == {"helped": True, "rating": 4, "comment": "good"}
    for field, at in zip(
        ("requested_at", "matched_at", "completed_at", "surveyed_at"),
        (e["occurred_at"] for e in events),
        strict=True,
    ):
        assert datetime.fromisoformat(state[field]) == datetime.fromisoformat(at)
    assert state["cancelled_at"] is None

    response = client.get(f"/v1/sessions/{d}/s-1/events", headers=auth("auditor"))
    assert response.status_code == 200, response.text
    history = response.json()["events"]
    assert [h["event"]["event_id"] for h in history] == [e["event_id"] for e in events]
    positions = [h["position"] for h in history]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert all(isinstance(h["hash"], str) and HEX64.match(h["hash"]) for h in history)
    assert len({h["hash"] for h in history}) == len(history)


def test_cancelled_session_state(client: TestClient) -> None:
    d = "cancel-d"
    post_ok(
        client,
        requested(d, "s-1", T0),
        cancelled(d, "s-1", T0 + timedelta(minutes=10), reason="no_tutor_available"),
    )
    state = client.get(f"/v1/sessions/{d}/s-1", headers=ADMIN).json()
    assert state["status"] == "cancelled"
    assert state["cancel_reason"] == "no_tutor_available"
    assert state["wait_seconds"] is None
    assert datetime.fromisoformat(state["cancelled_at"]) == T0 + timedelta(minutes=10)


def test_unknown_session_is_404(client: TestClient) -> None:
    assert_error(client.get("/v1/sessions/nobody-d/s-x", headers=ADMIN), 404, "not_found")
    assert_error(client.get("/v1/sessions/nobody-d/s-x/events", headers=ADMIN), 404, "not_found")


# -- schools ---------------------------------------------------------------------------------


def put_school(
    client: TestClient, district: str, school: str, enrollment: dict[str, int], as_of: str,
    name: str | None = None,
) -> int:  # fmt: skip
    body = {"name": name or f"School {school}", "enrollment": enrollment, "as_of": as_of}
    response = client.put(f"/v1/schools/{district}/{school}", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    recorded = response.json()
    assert recorded["district_id"] == district and recorded["school_id"] == school
    position: int = recorded["position"]
    return position


def test_put_school_then_list_shows_latest_enrolment(client: TestClient) -> None:
    d = "schools-d"
    p1 = put_school(client, d, "sch-a", {"5": 100, "6": 90}, "2026-01-15", "Old Name")
    p2 = put_school(client, d, "sch-a", {"5": 110, "6": 95, "7": 3}, "2026-02-01", "New Name")
    assert p2 > p1
    put_school(client, d, "sch-b", {"0": 40}, "2026-01-15")
    response = client.get("/v1/schools", params={"district_id": d}, headers=auth("dashboard"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["district_id"] == d
    by_id = {s["school_id"]: s for s in body["schools"]}
    assert set(by_id) == {"sch-a", "sch-b"}
    assert by_id["sch-a"]["name"] == "New Name"
    assert by_id["sch-a"]["enrollment"] == {"5": 110, "6": 95, "7": 3}
    assert by_id["sch-a"]["as_of"] == "2026-02-01"
    assert by_id["sch-b"]["enrollment"] == {"0": 40}
    # A back-dated correction (older as_of) is history, not the latest enrolment.
    put_school(client, d, "sch-a", {"5": 1}, "2025-09-01", "Back-dated")
    body = client.get("/v1/schools", params={"district_id": d}, headers=ADMIN).json()
    latest = {s["school_id"]: s for s in body["schools"]}["sch-a"]
    assert latest["enrollment"] == {"5": 110, "6": 95, "7": 3}
    # Other districts see nothing of it.
    other = client.get("/v1/schools", params={"district_id": "schools-none"}, headers=ADMIN)
    assert other.json()["schools"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "enrollment": {"13": 1}, "as_of": "2026-01-01"},
        {"name": "x", "enrollment": {"5": -1}, "as_of": "2026-01-01"},
        {"name": "x", "enrollment": {"5": 1}, "as_of": "not-a-date"},
        {"name": "", "enrollment": {"5": 1}, "as_of": "2026-01-01"},
        {"name": "x", "enrollment": {"5": 1}, "as_of": "2026-01-01", "extra": 1},
        {"enrollment": {"5": 1}, "as_of": "2026-01-01"},
    ],
    ids=["grade-13", "negative", "bad-date", "empty-name", "extra-field", "no-name"],
)
def test_put_school_invalid_is_422(client: TestClient, body: dict[str, Any]) -> None:
    before = head_position(client)
    response = client.put("/v1/schools/bad-school-d/sch-1", json=body, headers=ADMIN)
    assert_error(response, 422)
    assert head_position(client) == before


@pytest.mark.parametrize("school_id", ["sch 1", "sch@1", "x" * 65])
def test_put_school_with_a_bad_school_id_is_422(client: TestClient, school_id: str) -> None:
    before = head_position(client)
    body = {"name": "x", "enrollment": {"5": 1}, "as_of": "2026-01-01"}
    response = client.put(f"/v1/schools/bad-school-d/{school_id}", json=body, headers=ADMIN)
    assert_error(response, 422)
    assert head_position(client) == before


# -- participation ---------------------------------------------------------------------------

PD = "part-d"


@pytest.fixture(scope="module")
def participation_district(client: TestClient) -> None:
    """Two schools, five sessions, one enrolment update (hand-computed figures below).

    S1 stu1 A g5 algebra   2026-03-02 local: requested, matched, completed
    S2 stu1 A g5 geometry  2026-03-03 local: requested, cancelled
    S3 stu2 A g6 algebra   2026-03-03 23:30 local (= 03-04 UTC): requested only
    S4 stu3 B g5 Reading   2026-03-05 local: requested, matched, completed
    S5 stu4 B g5 algebra   2026-03-06 local: requested, matched, cancelled
    Enrolment: A {5: 100, 6: 50}, B {5: 40} as of 2026-02-01; A {5: 120, 6: 60} as of 2026-03-04.
    """
    put_school(client, PD, "A", {"5": 100, "6": 50}, "2026-02-01")
    put_school(client, PD, "B", {"5": 40}, "2026-02-01")
    put_school(client, PD, "A", {"5": 120, "6": 60}, "2026-03-04")

    def at(day: int, hh: int, mm: int = 0) -> datetime:
        return datetime.fromisoformat(f"2026-03-{day:02d}T{hh:02d}:{mm:02d}:00-05:00")

    m = timedelta(minutes=1)
    post_ok(
        client,
        requested(PD, "S1", at(2, 16), school="A", student="stu1", grade=5, subject="algebra"),
        matched(PD, "S1", at(2, 16) + m),
        completed(PD, "S1", at(2, 16) + 30 * m),
        requested(PD, "S2", at(3, 9), school="A", student="stu1", grade=5, subject="geometry"),
        cancelled(PD, "S2", at(3, 9) + 5 * m),
        requested(PD, "S3", at(3, 23, 30), school="A", student="stu2", grade=6, subject="algebra"),
        requested(PD, "S4", at(5, 17), school="B", student="stu3", grade=5, subject="Reading"),
        matched(PD, "S4", at(5, 17) + m),
        completed(PD, "S4", at(5, 17) + 40 * m),
        requested(PD, "S5", at(6, 17), school="B", student="stu4", grade=5, subject="algebra"),
        matched(PD, "S5", at(6, 17) + m),
        cancelled(PD, "S5", at(6, 17) + 3 * m, reason="student_left"),
    )


def expect(
    enrolled: int, served: int, req: int, match: int, done: int, cancel: int
) -> dict[str, Any]:
    return {
        "enrolled": enrolled,
        "students_served": served,
        "reach_rate": served / enrolled if enrolled else None,
        "sessions_requested": req,
        "sessions_matched": match,
        "sessions_completed": done,
        "sessions_cancelled": cancel,
        "sessions_per_served_student": req / served if served else None,
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, expect(220, 4, 5, 3, 2, 2)),
        ({"school_id": "A"}, expect(180, 2, 3, 1, 1, 1)),
        ({"school_id": "B"}, expect(40, 2, 2, 2, 1, 1)),
        ({"school_id": "nowhere"}, expect(0, 0, 0, 0, 0, 0)),
        ({"subject": "algebra"}, expect(220, 3, 3, 2, 1, 1)),
        ({"subject": "reading"}, expect(220, 1, 1, 1, 1, 0)),
        ({"subject": "READING"}, expect(220, 1, 1, 1, 1, 0)),
        ({"grade": 5}, expect(160, 3, 4, 3, 2, 2)),
        ({"grade": 6}, expect(60, 1, 1, 0, 0, 0)),
        ({"grade": 0}, expect(0, 0, 0, 0, 0, 0)),
        ({"from": "2026-03-03"}, expect(220, 4, 4, 2, 1, 2)),
        ({"to": "2026-03-03"}, expect(190, 2, 3, 1, 1, 1)),
        ({"from": "2026-03-03", "to": "2026-03-03"}, expect(190, 2, 2, 0, 0, 1)),
        ({"from": "2026-03-04", "to": "2026-03-04"}, expect(220, 0, 0, 0, 0, 0)),
        ({"to": "2026-01-31"}, expect(0, 0, 0, 0, 0, 0)),
        ({"school_id": "A", "grade": 6, "to": "2026-03-03"}, expect(50, 1, 1, 0, 0, 0)),
        ({"school_id": "B", "subject": "algebra", "grade": 5}, expect(40, 1, 1, 1, 0, 1)),
    ],
    ids=lambda v: (
        json.dumps(v, sort_keys=True) if isinstance(v, dict) and "enrolled" not in v else ""
    ),
)
def test_participation_filters(
    client: TestClient,
    participation_district: None,
    params: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    body = participation(client, district_id=PD, **params)
    got = figures(body)
    for key in ("reach_rate", "sessions_per_served_student"):
        if expected[key] is not None:
            expected[key] = pytest.approx(expected[key])
    assert got == expected
    assert body["district_id"] == PD
    assert isinstance(body["as_of_position"], int)
    assert HEX64.match(body["head_hash"])
    echoed = body["filters"]
    assert echoed["school_id"] == params.get("school_id")
    assert echoed["grade"] == params.get("grade")
    assert echoed["from"] == params.get("from")
    assert echoed["to"] == params.get("to")
    if "subject" in params:
        assert echoed["subject"] == params["subject"].lower()


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-03-05", "to": "2026-03-04"},
        {"grade": 13},
        {"grade": -1},
        {"grade": "seven"},
        {"from": "2026-13-01"},
        {"to": "03/04/2026"},
        {"from": "yesterday"},
        {"as_of_position": -1},
        {"subject": "no spaces"},
    ],
    ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()),
)
def test_participation_invalid_query_is_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get(
        "/v1/metrics/participation", params={"district_id": PD, **params}, headers=ADMIN
    )
    assert_error(response, 422, "invalid_request")


def test_participation_requires_district(client: TestClient) -> None:
    assert_error(client.get("/v1/metrics/participation", headers=ADMIN), 422, "invalid_request")


def test_as_of_position_reproduces_an_earlier_report(client: TestClient) -> None:
    d = "repro-d"
    put_school(client, d, "sch-1", {"7": 30}, "2026-02-01")
    post_ok(
        client,
        requested(d, "s-1", T0, student="a"),
        matched(d, "s-1", T0 + timedelta(minutes=1)),
        requested(d, "s-2", T0, student="b"),
    )
    earlier = participation(client, district_id=d)
    assert figures(earlier) == expect(30, 2, 2, 1, 0, 0) | {"reach_rate": pytest.approx(2 / 30)}
    # The published head hash is the chain hash of the district's last event at that position.
    history = client.get(f"/v1/sessions/{d}/s-2/events", headers=ADMIN).json()["events"]
    assert history[-1]["position"] <= earlier["as_of_position"]
    assert earlier["head_hash"] == history[-1]["hash"]
    position = earlier["as_of_position"]

    post_ok(
        client,
        completed(d, "s-1", T0 + timedelta(minutes=20)),
        cancelled(d, "s-2", T0 + timedelta(minutes=5)),
        requested(d, "s-3", T0 + timedelta(days=1), student="c"),
    )
    put_school(client, d, "sch-1", {"7": 60}, "2026-02-15")
    post_ok(client, requested("repro-other", "s-1", T0))  # another district moves the head too
    later = participation(client, district_id=d)
    assert later["as_of_position"] > position
    assert later["head_hash"] != earlier["head_hash"]
    assert figures(later) != figures(earlier)

    again = participation(client, district_id=d, as_of_position=position)
    assert again["as_of_position"] == position
    assert again["head_hash"] == earlier["head_hash"]
    assert figures(again) == figures(earlier)
    # And with every other filter the same way.
    scoped = {"school_id": "sch-1", "grade": 7, "from": "2026-03-01", "to": "2026-03-31"}
    first = participation(client, district_id=d, as_of_position=position, **scoped)
    second = participation(client, district_id=d, as_of_position=position, **scoped)
    assert figures(first) == figures(second) == figures(earlier)
    # Before the district existed there is nothing, and no head hash.
    nothing = participation(client, district_id=d, as_of_position=0)
    assert nothing["as_of_position"] == 0
    assert nothing["head_hash"] is None
    assert figures(nothing) == expect(0, 0, 0, 0, 0, 0)


# -- operations ------------------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_checks_and_lag(client: TestClient) -> None:
    post_ok(client, requested("ready-d", "s-1"))
    participation(client, district_id="ready-d")  # read-your-writes: catches the projector up
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 200, anonymous.text
    assert "position" not in anonymous.text  # no ledger position without a key
    assert isinstance(anonymous.json()["checks"]["projection_lag"], int)
    response = client.get("/readyz", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    checks = body["checks"]
    assert checks["event_store"]["ok"] is True
    assert checks["projections"]["ok"] is True
    assert checks["stream"]["ok"] is True and checks["stream"]["mode"] == "embedded"
    assert isinstance(checks["projection_lag"], int) and checks["projection_lag"] >= 0
    head = checks["event_store"]["head_position"]
    assert checks["projections"]["position"] <= head
    assert checks["projection_lag"] == head - checks["projections"]["position"]


def test_prometheus_metrics(client: TestClient) -> None:
    anonymous = client.get("/metrics").text  # lag and readiness, no ledger position
    assert re.search(r"^tutorledger_projection_lag_events \d+(\.\d+)?$", anonymous, re.M)
    assert "position" not in anonymous
    response = client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE tutorledger_projection_lag_events gauge" in text
    assert re.search(r"^tutorledger_projection_lag_events \d+(\.\d+)?$", text, re.M)
    assert re.search(r"^tutorledger_ledger_head_position \d+(\.\d+)?$", text, re.M)
    assert re.search(r"^tutorledger_ready 1(\.0)?$", text, re.M)


def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    expected = {
        "/v1/events": {"post"},
        "/v1/sessions/{district_id}/{session_id}": {"get"},
        "/v1/sessions/{district_id}/{session_id}/events": {"get"},
        "/v1/schools/{district_id}/{school_id}": {"put"},
        "/v1/schools": {"get"},
        "/v1/metrics/participation": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, f"{path} missing from OpenAPI"
        assert methods <= set(paths[path]), (path, set(paths[path]))
    participation_params = {
        p["name"] for p in paths["/v1/metrics/participation"]["get"]["parameters"]
    }
    assert participation_params >= {
        "district_id", "school_id", "subject", "grade", "from", "to", "as_of_position",
    }  # fmt: skip
    assert client.get("/docs").status_code == 200
