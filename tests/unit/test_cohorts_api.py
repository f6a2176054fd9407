"""Priority cohorts over HTTP on a real SQLite ledger and embedded chdb: roles, tokenisation
at the door, membership history and `as_of_position`, every metric restricted to a cohort
equal to the independent reference over the cohort's sessions, and erasure.

chdb holds one data dir per process, so the module shares ONE app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import reference_metrics as ref
from builders import envelope, exact, write_keys
from fastapi.testclient import TestClient
from metric_events import TZ, district
from reference import participation as ref_participation

from tutorledger.api.app import create_app
from tutorledger.consumers.projector import decode
from tutorledger.domain.published import parse_published
from tutorledger.infra.settings import Settings

D, OTHER = "co-gen", "co-other"
KEYS = {
    "admin": "cohort-admin-key-000000000",
    "dashboard": "cohort-dashboard-key-00000",
    "auditor": "cohort-auditor-key-0000000",
    "emitter": "cohort-emitter-key-0000000",
    "other_admin": "cohort-other-admin-key-000",
}
NEWCOMER = "cohort-only-student-7f3a"  # named by a cohort before any session of theirs


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cohorts")


@pytest.fixture(scope="module")
def client(app_dir: Path) -> Iterator[TestClient]:
    specs = [
        {"key": KEYS[r], "role": r, "districts": ["*"]}
        for r in ("admin", "dashboard", "auditor", "emitter")
    ]
    specs.append({"key": KEYS["other_admin"], "role": "admin", "districts": [OTHER]})
    settings = Settings(
        event_store=f"sqlite:///{app_dir}/l.db",
        clickhouse=f"chdb://{app_dir}/ch?database=cohorts",
        api_keys_file=write_keys(app_dir / "keys.json", specs),
        var_dir=app_dir / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def events(client: TestClient) -> list[dict[str, Any]]:
    accepted = []
    generated = district(D, students=160).events
    for i in range(0, len(generated), 1000):
        batch = generated[i : i + 1000]
        body = client.post("/v1/events", json={"events": batch}, headers=auth("admin")).json()
        accepted += [
            e for e, r in zip(batch, body["results"], strict=True) if r["status"] == "accepted"
        ]
    return accepted


def students(events: list[dict[str, Any]]) -> list[str]:
    return sorted({e["payload"]["student_id"] for e in events if e["type"] == "session.requested"})


def put(client: TestClient, cohort: str, ids: list[str], key: str = "admin", d: str = D) -> Any:
    body = {"name": f"Cohort {cohort}", "student_ids": ids}
    return client.put(f"/v1/cohorts/{d}/{cohort}", json=body, headers=auth(key))


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params={"district_id": D, **params}, headers=auth("admin"))
    assert response.status_code == 200, response.text
    return exact(response.json())


def test_roles_and_bad_bodies_record_nothing(client: TestClient, events: list[Any]) -> None:
    ids = students(events)[:5]
    head = get(client, "/v1/metrics/participation")["as_of_position"]
    assert put(client, "roles", ids, key="dashboard").status_code == 403
    assert put(client, "roles", ids, key="auditor").status_code == 403
    assert put(client, "roles", ids, key="other_admin").status_code == 403
    assert client.put(f"/v1/cohorts/{D}/roles", json={"name": "x"}).status_code == 401
    bad = put(client, "roles", [*ids, "someone@example.org"])
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert put(client, "bad id!", ids).status_code in (404, 422)
    assert get(client, "/v1/metrics/participation")["as_of_position"] == head
    assert (
        client.get("/v1/cohorts", params={"district_id": D}, headers=auth("emitter")).status_code
        == 403
    )
    listed = client.get("/v1/cohorts", params={"district_id": D}, headers=auth("dashboard"))
    assert listed.status_code == 200 and "roles" not in {
        c["cohort_id"] for c in listed.json()["cohorts"]
    }


def _restricted(
    client: TestClient, events: list[Any], cohort: str, members: set[str], **at: Any
) -> None:
    """Every metric with cohort_id equals the reference over the cohort's sessions."""
    mine = ref.in_cohort(events, members)
    params = {"cohort_id": cohort, **at}
    for group_by, names in (
        (None, ()),
        ("school", ("school",)),
        ("school,subject", ("school", "subject")),
    ):
        extra = {"group_by": group_by} if group_by else {}
        for metric, compute in (("wait-times", ref.wait_times), ("satisfaction", ref.satisfaction)):
            body = get(client, f"/v1/metrics/{metric}", **params, **extra)
            assert body["rows"] == json.loads(json.dumps(compute(mine, D, TZ, names), default=str))
    demand = get(client, "/v1/metrics/demand", **params)
    assert demand["rows"] == json.loads(
        json.dumps(ref.demand(mine, D, TZ, ("school", "subject")), default=str)
    )
    engagement = get(client, "/v1/metrics/engagement", **params)
    expected = json.loads(json.dumps(ref.engagement(mine, D, TZ), default=str))
    assert {k: engagement[k] for k in expected} == expected
    timing = get(client, "/v1/metrics/timing", **params)
    assert timing["requests"] == len([e for e in mine if e["type"] == "session.requested"])
    body = get(client, "/v1/metrics/participation", **params)
    reference = ref_participation(mine, [], D, TZ)
    for name in ("students_served", "sessions_requested", "sessions_matched", "sessions_completed",
                 "sessions_cancelled", "sessions_per_served_student"):  # fmt: skip
        assert body[name] == reference[name], name
    assert body["cohort_size"] == len(members)
    assert body["reach_rate"] == reference["students_served"] / len(members)
    assert body["filters"]["cohort_id"] == cohort


def test_cohort_history_figures_and_as_of(client: TestClient, events: list[Any]) -> None:
    everyone = students(events)
    first = set(everyone[::3]) | {NEWCOMER}
    one = put(client, "priority", sorted(first))
    assert one.status_code == 200, one.text
    assert one.json()["size"] == len(first)
    second = set(everyone[1::4])
    two = put(client, "priority", sorted(second)).json()
    assert two["position"] > one.json()["position"]
    listed = get(client, "/v1/cohorts")["cohorts"]
    assert [(c["cohort_id"], c["size"], c["as_of_position"]) for c in listed] == [
        ("priority", len(second), two["position"])
    ]
    then = get(client, "/v1/cohorts", as_of_position=one.json()["position"])["cohorts"]
    assert [(c["name"], c["size"]) for c in then] == [("Cohort priority", len(first))]
    assert get(client, "/v1/cohorts", as_of_position=one.json()["position"] - 1)["cohorts"] == []
    _restricted(client, events, "priority", second)
    _restricted(client, events, "priority", first - {NEWCOMER} | {NEWCOMER},
                as_of_position=one.json()["position"])  # fmt: skip
    early = client.get(
        "/v1/metrics/participation",
        params={
            "district_id": D,
            "cohort_id": "priority",
            "as_of_position": one.json()["position"] - 1,
        },
        headers=auth("admin"),
    )
    assert early.status_code == 404 and early.json()["error"]["code"] == "unknown_cohort"


def test_ledger_holds_tokens_only(client: TestClient, events: list[Any], app_dir: Path) -> None:
    named = students(events)[:3]
    put(client, "tokens", [*named, NEWCOMER])
    raw = b"".join(p.read_bytes() for p in app_dir.glob("l.db*"))
    assert NEWCOMER.encode() not in raw  # issued a key like ingest would, stored as a token
    ledger = client.app.state.runtime.ledger  # type: ignore[attr-defined]
    stored = [decode(ledger, n) for n in ledger.recorder.select_notifications(start=1, limit=10**6)]
    cohorts = [e for e in stored if e["type"] == "cohort.updated" and e["cohort_id"] == "tokens"]
    assert len(cohorts) == 1 and len(cohorts[0]["payload"]["student_tokens"]) == 4
    text = json.dumps(cohorts)
    assert not any(s in text for s in [*named, NEWCOMER])
    assert parse_published(cohorts[0])["payload"] == cohorts[0]["payload"]  # what Kafka carries


def test_erasure_keeps_the_member_and_the_figures(client: TestClient, events: list[Any]) -> None:
    members = students(events)[::5]
    put(client, "erasure", members)
    before = get(client, "/v1/metrics/participation", cohort_id="erasure")
    response = client.post(
        f"/v1/privacy/students/{D}/{members[0]}/erase",
        json={"reason": "parent_request"},
        headers={**auth("admin"), "X-Purpose": "unit test"},
    )
    assert response.status_code == 200, response.text
    after = get(client, "/v1/metrics/participation", cohort_id="erasure")
    assert {k: v for k, v in after.items() if k not in ("as_of_position", "head_hash")} == {
        k: v for k, v in before.items() if k not in ("as_of_position", "head_hash")
    }
    assert [
        c["size"] for c in get(client, "/v1/cohorts")["cohorts"] if c["cohort_id"] == "erasure"
    ] == [len(members)]


def test_small_cohort_sizes_withheld_from_dashboards(client: TestClient, events: list[Any]) -> None:
    put(client, "tiny", students(events)[:3])
    listed = client.get("/v1/cohorts", params={"district_id": D}, headers=auth("dashboard")).json()
    tiny = next(c for c in listed["cohorts"] if c["cohort_id"] == "tiny")
    assert tiny["size"] is None
    params = {"district_id": D, "cohort_id": "tiny"}
    today = client.get("/v1/metrics/participation", params=params, headers=auth("dashboard"))
    # Dashboards read published positions: the cohort is theirs once another day's event
    # follows it in the ledger.
    assert today.status_code == 404 and today.json()["error"]["code"] == "unknown_cohort"
    other_day = envelope(D, "after-tiny", "requested", "2026-09-01T10:00:00-04:00",
                         {"school_id": "sch-01", "student_id": "stu-after", "grade": 5,
                          "subject": "algebra"})  # fmt: skip
    posted = client.post("/v1/events", json={"events": [other_day]}, headers=auth("admin"))
    assert posted.status_code in (200, 201, 207), posted.text
    body = client.get("/v1/metrics/participation", params=params, headers=auth("dashboard")).json()
    assert body["cohort_size"] is None and body["reach_rate"] is None and body["suppressed"]


def test_rebuild_reproduces_cohorts_and_their_figures(
    client: TestClient, events: list[Any]
) -> None:
    put(client, "rebuilt", students(events)[::7])
    before = get(client, "/v1/cohorts")
    figures = get(client, "/v1/metrics/wait-times", cohort_id="rebuilt", group_by="school")
    response = client.post("/v1/admin/rebuild", headers=auth("admin"))
    assert response.status_code == 200, response.text
    assert get(client, "/v1/cohorts") == before
    assert get(client, "/v1/metrics/wait-times", cohort_id="rebuilt", group_by="school") == figures
