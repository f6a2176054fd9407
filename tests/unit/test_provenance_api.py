"""Provenance over HTTP: each emitter's events name its key and provider in the chained
history, the provider filter and `group_by=provider` answer per provider, and the
tutor-overlap audit (figures, evidence, alert) equals an independent fold."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import reference_metrics as ref
from builders import write_keys
from fastapi.testclient import TestClient
from overlap_events import PROVIDERS, by_provider, planted
from reference_overlap import overlapping_ids, reference

from tutorledger.api.app import create_app
from tutorledger.infra.settings import Settings

D, TZ = "prov-api", "UTC"
PLAIN = "prov-plain"  # the provider-less key's own event goes here: D's figures stay planted
KEYS = {
    PROVIDERS[0]: "emitter-vendor-a-key-000000",
    PROVIDERS[1]: "emitter-inhouse-key-0000000",
    "plain": "emitter-no-provider-key-000",
    "auditor": "auditor-key-provenance-0000",
    "dashboard": "dashboard-key-provenance-00",
    "admin": "admin-key-provenance-000000",
}
PURPOSE = {"X-Purpose": "provenance unit test"}


def key_id(name: str) -> str:
    return hashlib.sha256(KEYS[name].encode()).hexdigest()[:16]


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}", **PURPOSE}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("prov")
    specs: list[dict[str, Any]] = [
        {"key": KEYS[p], "role": "emitter", "districts": [D], "provider": p} for p in PROVIDERS
    ]
    specs += [
        {"key": KEYS["plain"], "role": "emitter", "districts": [D, PLAIN]},
        {"key": KEYS["auditor"], "role": "auditor", "districts": [D, PLAIN]},
        {"key": KEYS["dashboard"], "role": "dashboard", "districts": [D]},
        {"key": KEYS["admin"], "role": "admin", "districts": ["*"]},
    ]
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{tmp}/ch",
        api_keys_file=write_keys(tmp / "keys.json", specs),
        var_dir=tmp / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def events(client: TestClient) -> list[dict[str, Any]]:
    """The planted sessions, each provider's posted with its own key."""
    planted_events = planted(D)
    for provider, bodies in by_provider(planted_events).items():
        for i in range(0, len(bodies), 500):
            r = client.post("/v1/events", json={"events": bodies[i : i + 500]},
                            headers=auth(provider))  # fmt: skip
            assert r.status_code == 200, r.text
            assert {x["status"] for x in r.json()["results"]} == {"accepted"}, r.text
    return planted_events


def history(client: TestClient, session: str, district: str = D) -> list[dict[str, Any]]:
    r = client.get(f"/v1/sessions/{district}/{session}/events", headers=auth("auditor"))
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["events"]
    return items


def test_each_emitters_events_name_its_key_and_provider(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    for session, provider in (("same-1", PROVIDERS[0]), ("same-3", PROVIDERS[1])):
        for item in history(client, session):
            expected = {"format": 1, "via": "api", "key_id": key_id(provider), "provider": provider}
            assert item["provenance"] == expected
            assert item["event"]["provenance"] == expected  # as stored and chained
    r = client.get("/v1/audit/verify", params={"district_id": D}, headers=auth("auditor"))
    assert r.json()["ok"] is True


def test_a_key_without_provider_is_named_by_its_id_and_a_resend_keeps_the_first(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    first = by_provider(events)[PROVIDERS[0]][0]
    r = client.post("/v1/events", json=first, headers=auth("plain"))
    assert r.json()["results"][0]["status"] == "duplicate"
    stored = history(client, first["session_id"])[0]["provenance"]
    assert stored["provider"] == PROVIDERS[0]
    body = {**first, "event_id": "6f1d5b8e-2f9c-4c1e-9a4e-3d7f0b2a9c11", "district_id": PLAIN}
    r = client.post("/v1/events", json=body, headers=auth("plain"))
    assert r.json()["results"][0]["status"] == "accepted"
    assert history(client, first["session_id"], PLAIN)[0]["provenance"] == {
        "format": 1,
        "via": "api",
        "key_id": key_id("plain"),
    }


def _rows(body: dict[str, Any]) -> Any:
    """The rows' figures (auditors see them exact: `suppressed` is always false here)."""
    assert not any(r.pop("suppressed") for r in body["rows"])
    return json.loads(json.dumps(body["rows"]))


@pytest.mark.parametrize("provider", [None, *PROVIDERS])
def test_provider_filter_and_group_by_equal_the_fold(
    client: TestClient, events: list[dict[str, Any]], provider: str | None
) -> None:
    f = {} if provider is None else {"provider": provider}
    params = {"district_id": D, **f, "group_by": "provider"}
    scoped = events
    r = client.get("/v1/metrics/wait-times", params=params, headers=auth("auditor"))
    assert r.status_code == 200, r.text
    expected = ref.wait_times(scoped, D, TZ, ("provider",), **f)
    assert _rows(r.json()) == json.loads(json.dumps(expected))
    assert r.json()["filters"]["provider"] == provider
    r = client.get("/v1/metrics/demand", params=params, headers=auth("auditor"))
    assert _rows(r.json()) == json.loads(json.dumps(ref.demand(scoped, D, TZ, ("provider",), **f)))
    r = client.get("/v1/metrics/participation", params={"district_id": D, **f},
                   headers=auth("auditor"))  # fmt: skip
    students = {s.request["student_id"] for s in ref.select(scoped, D, TZ, **f)}
    assert r.json()["students_served"] == len(students)


@pytest.mark.parametrize(
    "group_by", ["provider,school,subject", "group,provider,school", "provider,provider"]
)
def test_group_by_provider_with_two_other_dimensions_is_422(
    client: TestClient, events: list[dict[str, Any]], group_by: str
) -> None:
    params = {"district_id": D, "group_by": group_by}
    r = client.get("/v1/metrics/demand", params=params, headers=auth("auditor"))
    assert r.status_code == 422


def test_group_by_provider_rows_and_filters_name_the_roster_group_too(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    """Merged with roster groups: provider rows carry `student_group` (null) and the echoed
    filters name both `provider` and `group`."""
    params = {"district_id": D, "provider": PROVIDERS[0], "group_by": "provider"}
    body = client.get("/v1/metrics/satisfaction", params=params, headers=auth("auditor")).json()
    assert [(r["provider"], r["student_group"]) for r in body["rows"]] == [(PROVIDERS[0], None)]
    assert body["filters"]["provider"] == PROVIDERS[0] and body["filters"]["group"] is None


def test_tutor_overlap_audit_equals_the_fold(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    r = client.get("/v1/audit/tutor-overlap", params={"district_id": D}, headers=auth("auditor"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tutors"] == json.loads(json.dumps(reference(events, D, TZ)))
    totals = {p["provider"]: p for p in body["providers"]}
    for provider in PROVIDERS:
        mine = [t for t in body["tutors"] if t["provider"] == provider]
        assert totals[provider]["sessions"] == sum(t["sessions"] for t in mine)
        overlapping = sum(t["overlapping_sessions"] for t in mine)
        assert totals[provider]["overlapping_sessions"] == overlapping
    r = client.get("/v1/audit/tutor-overlap", params={"district_id": D},
                   headers=auth("dashboard"))  # fmt: skip
    assert r.status_code == 403


def test_overlap_evidence_needs_a_purpose_and_is_disclosed(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    headers = {"Authorization": f"Bearer {KEYS['auditor']}"}
    url = "/v1/audit/tutor-overlap/sessions"
    r = client.get(url, params={"district_id": D}, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "purpose_required"
    r = client.get(url, params={"district_id": D}, headers=auth("auditor"))
    assert r.status_code == 200, r.text
    sessions = r.json()["sessions"]
    assert {s["session_id"]: set(s["overlaps_with"]) for s in sessions} == overlapping_ids(
        events, D
    )
    assert all(s["student_token"] and "stu-" not in s["student_token"] for s in sessions)
    log = client.get("/v1/privacy/disclosures", params={"district_id": D},
                     headers={"Authorization": f"Bearer {KEYS['admin']}"})  # fmt: skip
    assert log.status_code == 200, log.text
    read = [d for d in log.json()["disclosures"]
            if d["endpoint"] == "GET /v1/audit/tutor-overlap/sessions"]  # fmt: skip
    assert len(read) == 1
    assert set(read[0]["students"]) == {s["student_token"] for s in sessions}


def test_tutor_overlap_alert(client: TestClient, events: list[dict[str, Any]]) -> None:
    r = client.get("/v1/alerts", params={"district_id": D}, headers=auth("auditor"))
    assert r.status_code == 200, r.text
    found = {(a["scope"]["provider"], a["scope"]["tutor_id"]): a for a in r.json()["alerts"]
             if a["kind"] == "tutor_overlap"}  # fmt: skip
    rules = r.json()["rules"]
    at = r.json()["at"]
    assert at is not None
    # The fold over the alert's window (the last tutor_overlap_days local dates up to `at`).
    from datetime import date, timedelta

    last = date.fromisoformat(at)
    first = last - timedelta(days=rules["tutor_overlap_days"] - 1)
    expected = {
        (t["provider"], t["tutor_id"])
        for t in reference(events, D, TZ, date_from=first, date_to=last)
        if t["overlapping_sessions"] >= rules["tutor_overlap_sessions"]
        and t["share"] >= rules["tutor_overlap_share"]
    }
    assert set(found) == expected and expected  # the planted t-three has 3 of 4
    alert = found[(PROVIDERS[1], "t-three")]
    assert alert["evidence"][0].startswith("/v1/audit/tutor-overlap?")


def test_dashboard_offers_a_provider_picker_that_filters_the_page(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    import re

    client.cookies.clear()
    response = client.post("/signin", data={"key": KEYS["auditor"]}, follow_redirects=False)
    assert response.status_code == 303, response.text
    try:
        page = client.get(f"/dashboard/{D}")
        assert page.status_code == 200, page.text
        options = re.findall(r'<select id="f-provider" name="provider">(.*?)</select>', page.text,
                             re.S)  # fmt: skip
        assert options and re.findall(r'<option value="([^"]*)"', options[0]) == [
            "",
            *sorted(PROVIDERS),
        ]
        for provider in PROVIDERS:
            page = client.get(f"/dashboard/{D}", params={"provider": provider})
            assert page.status_code == 200, page.text
            assert f'<option value="{provider}" selected>' in page.text
            served = re.search(
                r'a request\)</small></th><td data-col="students_served" data-value="(\d+)"',
                page.text,
            )  # the reach table's figure for the whole view
            chosen = ref.select(events, D, TZ, provider=provider)
            assert served and int(served[1]) == len({s.request["student_id"] for s in chosen})
    finally:
        client.cookies.clear()
