"""Dosage and early alerts over HTTP on a generated district with planted cases: every figure
equals the independent reference, alerts read at an earlier position are reproduced exactly,
evidence links show the triggering figures, roles and disclosures hold."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import reference_insight as insight
from builders import exact, post_all, write_keys
from fastapi.testclient import TestClient
from insight_events import AT, insight_district
from metric_events import TZ

from tutorledger.api.app import create_app
from tutorledger.infra.settings import Settings

ADMIN, DASH, AUDITOR = (
    "alerts-admin-key-000000",
    "alerts-dash-key-0000000",
    "alerts-aud-key-00000000",
)
D = "a-gen"
PURPOSE = {"X-Purpose": "alert review 2026-11"}


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("alerts")
    keys = [
        {"key": ADMIN, "role": "admin", "districts": ["*"]},
        {"key": DASH, "role": "dashboard", "districts": [D]},
        {"key": AUDITOR, "role": "auditor", "districts": [D]},
    ]
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}",
        api_keys_file=write_keys(tmp / "keys.json", keys),
        var_dir=tmp / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


def post(client: TestClient, events: list[dict[str, Any]]) -> int:
    return post_all(client, events, auth(ADMIN))


@pytest.fixture(scope="module")
def loaded(client: TestClient) -> dict[str, Any]:
    """All events but the last 40 planted ones first (position `early`), then the rest."""
    events = insight_district(D)
    early = post(client, events[:-40])
    post(client, events[-40:])
    return {"events": events, "early": early, "early_events": events[:-40]}


def get(client: TestClient, path: str, key: str = ADMIN, **params: Any) -> Any:
    headers = auth(key, **(PURPOSE if path.endswith("students") else {}))
    response = client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return exact(response.json())


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def triples(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"kind": a["kind"], "scope": {k: v for k, v in a["scope"].items() if v is not None},
         "figures": a["figures"]}
        for a in body["alerts"]
    ]  # fmt: skip


def test_dosage_equals_reference_with_the_planted_long_session(
    client: TestClient, loaded: dict[str, Any]
) -> None:
    body = get(client, "/v1/metrics/dosage", district_id=D)
    figures = {k: v for k, v in body.items() if k not in
               ("district_id", "as_of_position", "head_hash", "filters", "suppressed")}  # fmt: skip
    figures["rows"] = [{k: v for k, v in r.items() if k != "suppressed"} for r in body["rows"]]
    assert figures == plain(insight.dosage(loaded["events"], D, TZ))
    assert body["length_max"] == 180.0  # the 3-hour session


def test_school_alerts_equal_reference_and_include_the_planted_cases(
    client: TestClient, loaded: dict[str, Any]
) -> None:
    body = get(client, "/v1/alerts", district_id=D, at=AT.isoformat())
    assert triples(body) == plain(insight.school_alerts(loaded["events"], D, TZ, AT))
    found = {(a["kind"], a["scope"]["school_id"]) for a in body["alerts"]}
    assert {("subject_hotspot", "sch-03"), ("long_waits", "sch-slow"),
            ("falling_use", "sch-fall")} <= found  # fmt: skip
    fall = next(a for a in body["alerts"] if a["kind"] == "falling_use"
                and a["scope"]["school_id"] == "sch-fall")  # fmt: skip
    assert (fall["figures"]["active_before"], fall["figures"]["active_after"]) == (20, 6)


def test_evidence_links_show_the_triggering_figures(
    client: TestClient, loaded: dict[str, Any]
) -> None:
    body = get(client, "/v1/alerts", district_id=D, at=AT.isoformat())
    for alert in body["alerts"]:
        shown = [get_path(client, path) for path in alert["evidence"]]
        assert all(s["as_of_position"] == body["as_of_position"] for s in shown)
        figures, scope = alert["figures"], alert["scope"]
        if alert["kind"] == "subject_hotspot":
            (row,) = shown[0]["rows"]
            assert {k: row[k] for k in ("requests", "lift")} == {
                k: figures[k] for k in ("requests", "lift")}  # fmt: skip
        elif alert["kind"] == "long_waits":
            row = next(r for r in shown[0]["rows"] if r["school_id"] == scope["school_id"])
            assert row["p90"] == figures["school_p90"]
            assert shown[1]["rows"][0]["p90"] == figures["district_p90"]
        elif alert["kind"] == "tutor_overlap":
            tutor = (scope["provider"], scope["tutor_id"])
            row = next(t for t in shown[0]["tutors"] if (t["provider"], t["tutor_id"]) == tutor)
            assert {k: row[k] for k in figures} == figures
        else:
            weeks = {r["week"]: r["weekly_active_students"] for r in shown[0]["rows"]}
            assert weeks[figures["week_before"]] == figures["active_before"]
            assert weeks[figures["week_after"]] == figures["active_after"]


def get_path(client: TestClient, path: str) -> Any:
    response = client.get(path, headers=auth(ADMIN, **PURPOSE))
    assert response.status_code == 200, (path, response.text)
    return exact(response.json())


def student_of_token(client: TestClient, session_id: str) -> tuple[str, str]:
    body = get_path(client, f"/v1/sessions/{D}/{session_id}")
    return body["student_id"], body["student_token"]


def test_student_alerts_equal_reference_by_token_and_are_disclosed(
    client: TestClient, loaded: dict[str, Any]
) -> None:
    body = get(client, "/v1/alerts/students", AUDITOR, district_id=D, at=AT.isoformat())
    expected = insight.student_alerts(loaded["events"], D, TZ, AT)
    got = []
    for alert in body["alerts"]:
        ids = alert["figures"].get("session_ids") or [alert["scope"]["session_id"]]
        student, token = student_of_token(client, ids[0])
        assert alert["scope"]["student_token"] == token and student not in json.dumps(alert)
        figures = {
            k: v for k, v in alert["figures"].items() if k not in ("session_ids", "percentile")
        }
        got.append({"kind": alert["kind"], "student": student, "subject": alert["scope"]["subject"],
                    "session_ids": sorted(ids), "figures": figures})  # fmt: skip
    key = lambda a: (a["kind"], a["student"], a["subject"])  # noqa: E731
    assert sorted(got, key=key) == sorted(plain(expected), key=key)
    kinds = {(a["kind"], a["student"]) for a in got}
    assert {("repeated_subject", "s-algebra"), ("long_session", "s-long")} <= kinds
    log = get(client, "/v1/privacy/disclosures", district_id=D)["disclosures"]
    mine = [d for d in log if d["endpoint"] == "GET /v1/alerts/students"]
    assert mine and set(mine[-1]["students"]) == {
        a["scope"]["student_token"] for a in body["alerts"]
    }
    assert mine[-1]["purpose"] == PURPOSE["X-Purpose"] and mine[-1]["role"] == "auditor"


def test_alerts_at_an_earlier_position_are_reproduced_exactly(
    client: TestClient, loaded: dict[str, Any]
) -> None:
    early, events = loaded["early"], loaded["early_events"]
    for path, reference in (("/v1/alerts", insight.school_alerts),
                            ("/v1/alerts/students", None)):  # fmt: skip
        first = get(client, path, district_id=D, at=AT.isoformat(), as_of_position=early)
        again = get(client, path, district_id=D, at=AT.isoformat(), as_of_position=early)
        assert first == again and first["as_of_position"] == early
        if reference is not None:
            assert triples(first) == plain(reference(events, D, TZ, AT))
    now = get(client, "/v1/alerts/students", district_id=D, at=AT.isoformat())
    before = get(client, "/v1/alerts/students", district_id=D, at=AT.isoformat(),
                 as_of_position=early)  # fmt: skip
    assert len(before["alerts"]) < len(now["alerts"])  # the last planted sessions came later
    expected = insight.student_alerts(events, D, TZ, AT)
    assert sorted(a["kind"] for a in before["alerts"]) == sorted(a["kind"] for a in expected)


def test_default_at_is_the_latest_requests_local_date(
    client: TestClient, loaded: dict[str, Any]
) -> None:
    # A school update is recorded when it is loaded (today): it must not move the windows.
    school = {"name": "School 1", "enrollment": {"5": 100}, "as_of": "2026-09-01"}
    put = client.put(f"/v1/schools/{D}/sch-01", json=school, headers=auth(ADMIN))
    assert put.status_code == 200, put.text
    body = get(client, "/v1/alerts", district_id=D)
    assert body["as_of_position"] == put.json()["position"]

    # Requests only: a survey days after the last request must not make its week look whole.
    def day(events: list[dict[str, Any]]) -> str:
        latest = max(datetime.fromisoformat(e["occurred_at"]) for e in events)
        return latest.astimezone(ZoneInfo(TZ)).date().isoformat()

    requests = [e for e in loaded["events"] if e["type"] == "session.requested"]
    assert day(loaded["events"]) > day(requests)  # a later survey: the test tells them apart
    assert body["at"] == day(requests)
    assert body["rules"]["hotspot_lift"] == 2.0 and body["time_zone"] == TZ


def test_roles_purpose_and_small_cells(client: TestClient, loaded: dict[str, Any]) -> None:
    params = {"district_id": D, "at": AT.isoformat()}
    denied = client.get("/v1/alerts/students", params=params, headers=auth(DASH, **PURPOSE))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    no_purpose = client.get("/v1/alerts/students", params=params, headers=auth(AUDITOR))
    assert no_purpose.status_code == 422
    assert no_purpose.json()["error"]["code"] == "purpose_required"
    other = client.get("/v1/alerts", params={**params, "district_id": "elsewhere"},
                       headers=auth(DASH))  # fmt: skip
    assert other.status_code == 403
    bad = client.get("/v1/alerts", params={**params, "at": "2026-13-01"}, headers=auth(DASH))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    exact_body = get(client, "/v1/alerts", ADMIN, **params)
    dash = client.get("/v1/alerts", params=params, headers=auth(DASH)).json()
    assert [a["scope"] for a in dash["alerts"]] == [a["scope"] for a in exact_body["alerts"]]
    fall = next(a for a in dash["alerts"] if a["kind"] == "falling_use")
    assert fall["suppressed"] and dash["suppressed"]
    assert fall["figures"]["active_after"] is None and fall["figures"]["drop"] is None
    assert fall["figures"]["active_before"] == 20


def test_openapi_declares_the_alert_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    students = paths["/v1/alerts/students"]["get"]
    assert {"200", "401", "403", "422", "503"} <= set(students["responses"])
    assert any(p["name"] == "X-Purpose" and p["required"] for p in students["parameters"])
    assert {"200", "401", "403", "422"} <= set(paths["/v1/alerts"]["get"]["responses"])
    assert "falling_use" in paths["/v1/alerts"]["get"]["description"]
