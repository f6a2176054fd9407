"""Cohorts in the dashboard on a real SQLite ledger and embedded chdb: an admin's CSV upload
records the cohort exactly as `PUT /v1/cohorts` would (the API then lists it, and a metric
restricted to it equals the reference over its members); a dashboard key, a cross-origin post
and every bad file are refused with nothing recorded; student ids never come back in a page.

chdb holds one data dir per process, so the module shares ONE app.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import reference_metrics as ref
from builders import exact, write_keys
from fastapi.testclient import TestClient
from metric_events import TZ, district
from reference import participation as ref_participation

from tutorledger.api.app import create_app
from tutorledger.api.dashboard.cohort_upload import MAX_UPLOAD_BYTES, student_ids
from tutorledger.domain.errors import InvalidRequest
from tutorledger.infra.settings import Settings

D = "coup-gen"
KEYS = {"admin": "coup-admin-key-0000000000", "dashboard": "coup-dashboard-key-000000"}
PAGE = f"/dashboard/{D}/cohorts"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[TestClient]:
    app_dir = tmp_path_factory.mktemp("coup")
    specs = [{"key": KEYS[r], "role": r, "districts": ["*"]} for r in KEYS]
    settings = Settings(
        event_store=f"sqlite:///{app_dir}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}",
        api_keys_file=write_keys(app_dir / "keys.json", specs),
        var_dir=app_dir / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def events(client: TestClient) -> list[dict[str, Any]]:
    generated = district(D, students=60).events
    accepted = []
    for i in range(0, len(generated), 1000):
        batch = generated[i : i + 1000]
        body = client.post("/v1/events", json={"events": batch}, headers=bearer("admin")).json()
        accepted += [
            e for e, r in zip(batch, body["results"], strict=True) if r["status"] == "accepted"
        ]
    return accepted


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


def sign_in(client: TestClient, role: str) -> None:
    client.cookies.clear()
    signed = client.post("/signin", data={"key": KEYS[role]}, follow_redirects=False)
    assert signed.status_code == 303, signed.text


def listed(client: TestClient) -> tuple[int, dict[str, Any]]:
    """The API's cohort list (exact, admin key): its position and cohorts by id."""
    response = client.get("/v1/cohorts", params={"district_id": D}, headers=bearer("admin"))
    assert response.status_code == 200, response.text
    body = exact(response.json())
    return body["as_of_position"], {c["cohort_id"]: c for c in body["cohorts"]}


def upload(client: TestClient, cohort_id: str, data: bytes, *, origin: str | None = None) -> Any:
    headers = {"Origin": origin} if origin else {}
    return client.post(
        PAGE,
        data={"cohort_id": cohort_id, "name": f"Cohort {cohort_id}"},
        files={"file": ("ids.csv", data, "text/csv")},
        headers=headers,
        follow_redirects=False,
    )


def served(events: list[dict[str, Any]]) -> list[str]:
    return sorted({e["payload"]["student_id"] for e in events if e["type"] == "session.requested"})


def test_admin_upload_records_the_cohort_as_the_api_would(
    client: TestClient, events: list[Any]
) -> None:
    sign_in(client, "admin")
    page = client.get(PAGE)
    assert page.status_code == 200 and 'id="cohort-upload"' in page.text
    members = served(events)[::3]
    newcomer = "coup-newcomer-01"  # no session of theirs yet: a member all the same
    lines = ["school,student_id", *[f"sch-x,{s}" for s in members], "", f"sch-y,{members[0]}"]
    data = ("\r\n".join([*lines, f"sch-z,{newcomer}"]) + "\r\n").encode()
    response = upload(client, "tutoring-priority", data, origin="http://testserver")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{PAGE}?recorded=tutoring-priority"
    position, cohorts = listed(client)
    mine = cohorts["tutoring-priority"]
    assert (mine["name"], mine["size"]) == ("Cohort tutoring-priority", len(members) + 1)
    shown = client.get(response.headers["location"])
    row = re.search(r'<tr data-key="tutoring-priority"[^>]*>(.*?)</tr>', shown.text, re.S)
    assert row, shown.text
    assert f'data-col="size" data-value="{len(members) + 1}"' in row.group(1)
    assert f'data-col="position" data-value="{mine["as_of_position"]}"' in row.group(1)
    assert mine["as_of_position"] <= position
    assert 'id="cohort-recorded"' in shown.text
    assert 'id="cohort-recorded"' not in client.get(f"{PAGE}?recorded=never-recorded").text
    body = exact(client.get("/v1/metrics/participation", headers=bearer("admin"), params={
        "district_id": D, "cohort_id": "tutoring-priority"}).json())  # fmt: skip
    reference = ref_participation(ref.in_cohort(events, set(members)), [], D, TZ)
    assert body["cohort_size"] == len(members) + 1
    for name in ("students_served", "sessions_requested", "sessions_completed"):
        assert body[name] == reference[name], name
    assert newcomer not in shown.text and members[0] not in shown.text

    plain = "\n".join(served(events)[:4]).encode()  # one id a line, no header, no final newline
    again = upload(client, "tutoring-priority", plain)  # no Origin header: a same-site post
    assert again.status_code == 303
    assert listed(client)[1]["tutoring-priority"]["size"] == 4


def test_dashboard_key_sees_the_list_but_may_not_record(
    client: TestClient, events: list[Any]
) -> None:
    sign_in(client, "admin")
    for cohort, size in (("seen-by-all", 12), ("small-few", 2)):
        ids = "\n".join(served(events)[:size]).encode()
        assert upload(client, cohort, ids).status_code == 303
    before = listed(client)
    sign_in(client, "dashboard")
    page = client.get(PAGE)
    assert page.status_code == 200
    api = client.get("/v1/cohorts", params={"district_id": D}, headers=bearer("dashboard")).json()
    for c in api["cohorts"]:  # sizes as the API gives them to the same key: small ones withheld
        shown = "" if c["size"] is None else str(c["size"])
        row = re.search(rf'<tr data-key="{re.escape(c["cohort_id"])}".*?</tr>', page.text, re.S)
        assert row and f'data-col="size" data-value="{shown}"' in row.group(0)
    assert {c["cohort_id"]: c["size"] for c in api["cohorts"]}["small-few"] is None
    assert 'id="cohort-upload"' not in page.text and "multipart/form-data" not in page.text
    refused = upload(client, "by-dashboard", b"\n".join(s.encode() for s in served(events)))
    assert refused.status_code == 403 and "admin only" in refused.text
    assert listed(client) == before


def test_without_a_session_an_upload_goes_to_sign_in(client: TestClient) -> None:
    client.cookies.clear()
    response = upload(client, "anonymous", b"stu-1\n")
    assert response.status_code == 303 and response.headers["location"].startswith("/?next=")


def test_a_cross_origin_post_is_refused(client: TestClient, events: list[Any]) -> None:
    sign_in(client, "admin")
    before = listed(client)
    for origin in ("https://evil.example", "http://testserver.evil.example", "null"):
        response = upload(client, "csrf", served(events)[0].encode(), origin=origin)
        assert response.status_code == 403, origin
        assert "own form" in response.text
    assert listed(client) == before


BAD_FILES = [
    ("bad-line", b"stu-1\nstu-2\nsomeone@example.org\nstu-4\n", 422, "line 3: not a student id"),
    ("bad-cell", b"student_id,grade\nstu-1,4\n,5\n", 422, "line 3: not a student id"),
    ("wide", b"stu-1,4\nstu-2,5\n", 422, "line 1: 2 columns but no &#39;student_id&#39;"),
    ("empty", b"", 422, "holds no student id"),
    ("header-only", b"student_id\n\n\n", 422, "holds no student id"),
    ("not-utf8", b"stu-\xff\n", 422, "not UTF-8"),
    ("too-large", b"stu-1\n" * (MAX_UPLOAD_BYTES // 6 + 1), 413, "larger than 5 MB"),
    ("far-too-large", b"stu-1\n" * (MAX_UPLOAD_BYTES // 5), 413, "larger than 5 MB"),
    ("roster.ell", b"stu-1\n", 409, "reserved_cohort_id"),
    ("bad id!", b"stu-1\n", 422, "cohort id: 1 to 64"),
]


@pytest.mark.parametrize(("cohort_id", "data", "status", "says"), BAD_FILES)
def test_a_bad_upload_is_shown_and_records_nothing(
    client: TestClient, events: list[Any], cohort_id: str, data: bytes, status: int, says: str
) -> None:
    sign_in(client, "admin")
    before = listed(client)
    response = upload(client, cohort_id, data)
    assert response.status_code == status, response.text
    assert 'id="cohort-error"' in response.text and says in response.text
    assert "someone@example.org" not in response.text
    assert 'id="cohort-upload"' in response.text  # the form is still there to try again
    assert listed(client) == before


def test_the_parser_reads_the_usual_shapes() -> None:
    assert student_ids(b"\xef\xbb\xbfStudent_ID\r\nA-1\r\n\r\n  b.2 \r\n") == ["A-1", "b.2"]
    assert student_ids(b"id,student_id\n9,x:1\n") == ["x:1"]
    assert student_ids(b"x1\nx1\n") == ["x1", "x1"]  # duplicates count once in put_cohort
    with pytest.raises(InvalidRequest, match="line 2"):
        student_ids(b'a\n"b\nc')  # an unterminated quote: the row starting on line 2
    with pytest.raises(InvalidRequest, match="more than 200,000"):
        student_ids(b"\n".join(b"s%d" % i for i in range(200_001)))


def test_a_method_no_route_takes_lists_every_method_of_the_path(client: TestClient) -> None:
    """The page and the upload are two routes of one path: a 405 names both (Starlette's
    own names only the first route whose path matched)."""
    answer = client.request("OPTIONS", "/dashboard/any-district/cohorts")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    assert client.delete("/v1/events").headers["allow"] == "POST"
