"""Hostile input against a live server: each kind gets a clear machine code and stores nothing.

"Nothing stored" is checked on the ledger itself after every case: its head position (read
by /readyz from the event store) and the district's verified chain length do not move.
Injection strings in free text are the exception by design: they are stored verbatim and
read back byte for byte, and harm nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import installed
import live
import pytest
from builders import at_minute, write_keys

pytestmark = pytest.mark.e2e

ADMIN = "hostile-admin-key-000000000"
EMITTER_ONE = "hostile-emitter-d1-00000000"
D1, D2 = "hd-1", "hd-2"
MAX_BODY = 1024 * 1024
INJECTIONS = [
    "'; DROP TABLE ledger_events; --",
    '" OR 1=1 --',
    "%(district_id)s {district_id} ${jndi:ldap://x} {{7*7}}",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "Robert'); DELETE FROM stored_events WHERE ('1'='1",
    "\\'; SELECT sleep(10); --",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("hostile")
    keys = write_keys(
        tmp / "keys.json",
        [
            {"key": ADMIN, "role": "admin", "districts": ["*"]},
            {"key": EMITTER_ONE, "role": "emitter", "districts": [D1]},
        ],
    )
    env = live.embedded_env(tmp, keys, TUTORLEDGER_MAX_BODY_BYTES=str(MAX_BODY))
    server = live.serve(env, tmp / "serve.log", cli=installed.cli())
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            client.headers["Authorization"] = f"Bearer {ADMIN}"
            client.headers["X-Purpose"] = "hostile input test"  # session reads need one
            seed = [at_minute(D1, "seed", "requested", 1, school_id="s1", student_id="st-1",
                              grade=3, subject="math")]  # fmt: skip
            assert client.post("/v1/events", json={"events": seed}).json()["results"][0][
                "status"
            ] == ("accepted")
            yield client
    finally:
        server.stop()


def ledger_state(client: httpx.Client) -> tuple[int, int]:
    head = client.get("/readyz").json()["checks"]["event_store"]["head_position"]
    verified = client.get("/v1/audit/verify", params={"district_id": D1}).json()["checked"]
    return head, verified


def requested(**payload: Any) -> dict[str, Any]:
    body = {"school_id": "s1", "student_id": "st-9", "grade": 3, "subject": "math"}
    return at_minute(D1, f"h-{uuid.uuid4().hex[:8]}", "requested", 2, **{**body, **payload})


def with_fields(**fields: Any) -> dict[str, Any]:
    return {**requested(), **fields}


def raw(body: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": content_type}}


def chunked(total: int) -> Iterator[bytes]:
    yield b'{"events": ["'
    for _ in range(total // 4096):
        yield b"x" * 4096
    yield b'"]}'


@dataclass
class Case:
    kind: str
    send: Callable[[httpx.Client], httpx.Response]
    status: int
    code: str  # top-level error code, or the per-event rejection code when status is 200


def post(**kwargs: Any) -> Callable[[httpx.Client], httpx.Response]:
    return lambda c: c.post("/v1/events", **kwargs)


def get(path: str, **params: Any) -> Callable[[httpx.Client], httpx.Response]:
    return lambda c: c.get(path, params=params)


def put_school(body: Any) -> Callable[[httpx.Client], httpx.Response]:
    return lambda c: c.put(f"/v1/schools/{D1}/s1", json=body)


SCHOOL = {"name": "School", "enrollment": {"3": 10}, "as_of": "2026-01-05"}
METRIC = "/v1/metrics/participation"
CASES = [
    Case("oversized body", post(**raw(b'{"pad": "' + b"x" * MAX_BODY + b'"}')), 413,
         "payload_too_large"),
    Case("oversized chunked body", post(content=chunked(MAX_BODY * 2)), 413, "payload_too_large"),
    Case("1001 events", post(json={"events": [requested() for _ in range(1001)]}), 422,
         "invalid_request"),
    Case("deep nesting", post(**raw(b"[" * 200_000 + b"]" * 200_000)), 400, "malformed_json"),
    Case("deep nesting inside an event", post(json=with_fields(payload=json.loads(
        "[" * 300 + "]" * 300))), 200, "invalid_event"),
    Case("wrong type: grade as text", post(json=requested(grade="3")), 200, "invalid_event"),
    Case("wrong type: schema_version true", post(json=with_fields(schema_version=True)), 200,
         "invalid_event"),
    Case("wrong type: body is a list", post(json=[requested()]), 422, "invalid_request"),
    Case("wrong type: events not a list", post(json={"events": "x"}), 422, "invalid_request"),
    Case("huge string in topic", post(json=requested(topic="t" * 50_000)), 200, "invalid_event"),
    Case("huge session id", post(json=with_fields(session_id="s" * 129)), 200, "invalid_event"),
    Case("control characters in topic", post(json=requested(topic="a\x1b[31mb\x07")), 200,
         "invalid_event"),
    Case("NUL in topic", post(json=requested(topic="before\x00after")), 200, "invalid_event"),
    Case("NUL in student id", post(json=requested(student_id="st\x00-1")), 200, "invalid_event"),
    Case("non-UTF-8 body", post(**raw('{"topic": "caf\xe9"}'.encode("latin-1"))), 400,
         "malformed_json"),
    Case("UTF-16 body", post(**raw(json.dumps(requested()).encode("utf-16"))), 400,
         "malformed_json"),
    Case("lone surrogate", post(**raw(b'{"event_id": "\\ud800"}')), 400, "malformed_json"),
    Case("duplicate JSON keys", post(**raw(
        json.dumps(requested())[:-1].encode() + b', "district_id": "hd-2"}')), 422,
        "duplicate_key"),
    Case("not JSON", post(**raw(b"{'event_id': 1")), 400, "malformed_json"),
    Case("empty body", post(**raw(b"")), 422, "invalid_request"),
    Case("timestamp far in the future", post(json=with_fields(
        occurred_at="9999-12-31T23:59:59+00:00")), 200, "invalid_event"),
    Case("timestamp before 2000", post(json=with_fields(occurred_at="1999-12-31T23:59:59Z")),
         200, "invalid_event"),
    Case("timestamp without offset", post(json=with_fields(occurred_at="2026-03-02T15:00:00")),
         200, "invalid_event"),
    Case("timestamp as epoch number", post(json=with_fields(occurred_at=1772463600)), 200,
         "invalid_event"),
    Case("unknown type", post(json=with_fields(type="session.exploded")), 200, "invalid_event"),
    Case("unknown schema version", post(json=with_fields(schema_version=2)), 200,
         "invalid_event"),
    Case("unknown payload field", post(json=requested(ssn="123-45-6789")), 200, "invalid_event"),
    Case("event id not a UUID", post(json=with_fields(event_id="1 OR 1=1")), 200,
         "invalid_event"),
    Case("batch mixing districts, key for one", lambda c: c.post(
        "/v1/events", json={"events": [requested(), {**requested(), "district_id": D2}]},
        headers={"Authorization": f"Bearer {EMITTER_ONE}"}), 403, "forbidden"),
    Case("injection in district_id query", get(METRIC, district_id="d' OR '1'='1"), 422,
         "invalid_request"),
    Case("injection in school_id query", get(METRIC, district_id=D1, school_id="x'--"), 422,
         "invalid_request"),
    Case("injection in subject query", get(METRIC, district_id=D1, subject="m%') --"), 422,
         "invalid_request"),
    Case("injection in group_by", get("/v1/metrics/demand", district_id=D1,
         group_by="school_id; DROP TABLE x"), 422, "invalid_request"),
    Case("injection in path", get(f"/v1/sessions/{D1}/x' OR '1'='1"), 422, "invalid_request"),
    Case("date before ClickHouse's range", get(METRIC, district_id=D1, **{"from": "1969-12-31"}),
         422, "invalid_request"),
    Case("date after ClickHouse's range", get(METRIC, district_id=D1, to="2106-01-01"), 422,
         "invalid_request"),
    Case("from after to", get(METRIC, district_id=D1, **{"from": "2026-03-02", "to": "2026-03-01"}),
         422, "invalid_request"),
    Case("negative as_of_position", get(METRIC, district_id=D1, as_of_position=-1), 422,
         "invalid_request"),
    Case("school as_of outside ClickHouse's range", put_school({**SCHOOL, "as_of": "1900-01-01"}),
         422, "invalid_request"),
    Case("school grade 13", put_school({**SCHOOL, "enrollment": {"13": 5}}), 422,
         "invalid_request"),
    Case("school enrolment over UInt32", put_school({**SCHOOL, "enrollment": {"3": 2**40}}), 422,
         "invalid_request"),
    Case("school name with NUL", put_school({**SCHOOL, "name": "a\x00b"}), 422,
         "invalid_request"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_hostile_input_gets_a_code_and_stores_nothing(api: httpx.Client, case: Case) -> None:
    before = ledger_state(api)
    response = case.send(api)
    assert response.status_code == case.status, response.text[:2000]
    body = response.json()
    if case.status == 200:
        results = body["results"]
        assert results and all(r["status"] == "rejected" for r in results), body
        assert {r["error"]["code"] for r in results} == {case.code}
    else:
        assert body["error"]["code"] == case.code, body
    assert ledger_state(api) == before, f"{case.kind} changed the ledger"


def test_catalogue_covers_at_least_twenty_kinds() -> None:
    assert len({c.kind for c in CASES}) >= 20


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_strings_in_free_text_are_stored_verbatim_and_harmless(
    api: httpx.Client, text: str
) -> None:
    event = requested(topic=text)
    results = api.post("/v1/events", json=event).json()["results"]
    assert results[0]["status"] == "accepted", results
    session = api.get(f"/v1/sessions/{D1}/{event['session_id']}").json()
    assert session["topic"] == text
    history = api.get(f"/v1/sessions/{D1}/{event['session_id']}/events").json()
    history_event = history["events"][0]
    assert history_event["decrypted"]["payload"]["topic"] == text  # sealed in "event"
    assert text not in json.dumps(history_event["event"])
    school = api.put(f"/v1/schools/{D1}/s1", json={**SCHOOL, "name": text})
    assert school.status_code == 200, school.text
    names = {s["name"] for s in api.get("/v1/schools", params={"district_id": D1}).json()[
        "schools"]}  # fmt: skip
    assert names == {text}
    figures = api.get(METRIC, params={"district_id": D1})
    assert figures.status_code == 200 and figures.json()["sessions_requested"] >= 2
    assert api.get("/v1/audit/verify", params={"district_id": D1}).json()["ok"] is True
