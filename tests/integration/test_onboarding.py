"""Onboarding a district on SQLite and PostgreSQL: the roster through the admin endpoint sets
enrolment by date (reach before and after a change uses the enrolment of its day), a
vendor's history imported equals the same history posted through the API (every metric),
and the importer and the API given the same events build the same hash chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import pytest
from builders import envelope, role_keys, write_keys
from fastapi.testclient import TestClient
from imports import chain_head, converter, events_in_order, truth, vendor_csv
from rosters import generated_bundle

from devtools import services
from tutorledger.api.app import create_app
from tutorledger.api.cli.audit import metric_answers
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.importers.session_reader import batches
from tutorledger.infra.importers.sessions import SessionImport
from tutorledger.infra.settings import Settings

KEYS = {
    "admin": "onboard-admin-key-000000",
    "emitter": "onboard-emitter-key-0000",
    "dashboard": "onboard-dashboard-key-00",
    "admin_limited": "onboard-admin-ltd-key-00",
}
ZIP = {"Content-Type": "application/zip"}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@contextmanager
def served(store_url: str, chdb_url: str, tmp: Path, **overrides: Any) -> Iterator[TestClient]:
    settings = Settings(
        event_store=store_url,
        clickhouse=chdb_url,
        api_keys_file=write_keys(tmp / "keys.json", role_keys(KEYS, "elsewhere")),
        var_dir=tmp / "var",
        **overrides,
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def second_store_url(
    store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A second empty store of the same kind (positions start at 1 in both)."""
    if store_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/second.db"
        return
    server = request.getfixturevalue("pg_server")
    name = f"{services.TEST_DB_PREFIX}{uuid.uuid4().hex}"
    yield services.create_database(name, server)
    services.drop_database(name, server)


def participation(client: TestClient, district: str, **params: Any) -> dict[str, Any]:
    r = client.get("/v1/metrics/participation", params={"district_id": district, **params},
                   headers=auth("admin"))  # fmt: skip
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_roster_sets_enrolment_by_date_and_reach_uses_the_enrolment_of_its_day(
    store_url: str, chdb_url: str, tmp_path: Path
) -> None:
    d = "roster-d"
    autumn, spring = generated_bundle({"a": 26, "b": 13}), generated_bundle({"a": 26, "b": 20})
    with served(store_url, chdb_url, tmp_path) as client:

        def post(bundle: Any, as_of: str, key: str = "admin", district: str = d) -> Any:
            return client.post(f"/v1/admin/roster/{district}", params={"as_of": as_of},
                               content=bundle.zip_bytes(), headers=auth(key) | ZIP)  # fmt: skip

        assert post(autumn, "2025-09-01", "dashboard").status_code == 403
        assert post(autumn, "2025-09-01", "admin_limited").status_code == 403
        first = post(autumn, "2025-09-01")
        assert first.status_code == 200, first.text
        assert [(s["school_id"], s["enrolled"]) for s in first.json()["schools"]] == [
            ("a", 27),  # the mover is at a in September
            ("b", 13),
        ]
        assert {s["status"] for s in post(autumn, "2025-09-01").json()["schools"]} == {"unchanged"}
        second = post(spring, "2026-02-01").json()
        assert [(s["school_id"], s["enrolled"]) for s in second["schools"]] == [
            ("a", 26),
            ("b", 21),
        ]
        assert second["in_several_schools"] == 1 and second["outside_k12"] == 2
        for n, day in enumerate(["2025-10-06", "2025-10-07", "2026-02-09"]):
            at = f"{day}T16:00:00-04:00" if day.startswith("2025") else f"{day}T16:00:00-05:00"
            payload = {"school_id": "b", "student_id": f"stu-{n}", "grade": 7, "subject": "math"}
            event = envelope(d, f"s-{n}", "requested", at, payload)
            assert client.post("/v1/events", json=event, headers=auth("emitter")).status_code == 200
        autumn_reach = participation(client, d, **{"from": "2025-09-01", "to": "2025-12-31"})
        spring_reach = participation(client, d, **{"from": "2026-02-01", "to": "2026-02-28"})
        assert (autumn_reach["enrolled"], autumn_reach["students_served"]) == (40, 2)
        assert autumn_reach["reach_rate"] == pytest.approx(2 / 40)
        assert (spring_reach["enrolled"], spring_reach["students_served"]) == (47, 1)
        school_b = participation(client, d, school_id="b", to="2025-12-31")
        assert school_b["enrolled"] == 13
        assert participation(client, d, school_id="b", to="2026-02-28")["enrolled"] == 21
        assert participation(client, d, school_id="b", grade=7, to="2026-02-28")["enrolled"] == 2
        listed = client.get("/v1/schools", params={"district_id": d}, headers=auth("admin"))
        assert {s["school_id"]: s["as_of"] for s in listed.json()["schools"]} == {
            "a": "2026-02-01",
            "b": "2026-02-01",
        }


def test_a_bad_roster_changes_nothing_and_names_its_lines(
    store_url: str, chdb_url: str, tmp_path: Path
) -> None:
    bundle = generated_bundle({"a": 3, "b": 3})
    bundle.raw_lines["enrollments.csv"] = ["e-bad,,,c,a,stu-guid-00001,student,,someday,"]
    with served(store_url, chdb_url, tmp_path, max_body_bytes=64 * 1024) as client:
        head = client.get("/v1/audit/verify", params={"district_id": "bad-d"},
                          headers=auth("admin")).json()["head_position"]  # fmt: skip
        r = client.post("/v1/admin/roster/bad-d", params={"as_of": "2025-09-01"},
                        content=bundle.zip_bytes(), headers=auth("admin") | ZIP)  # fmt: skip
        assert r.status_code == 422
        error = r.json()["error"]
        line = len(bundle.enrollments) + 2
        assert error["code"] == "invalid_roster"
        assert error["details"] == [
            {"file": "enrollments.csv", "line": line, "problem": "dates must be YYYY-MM-DD",
             "column": "beginDate/endDate"}
        ]  # fmt: skip
        assert not [s for s in bundle.personal_strings() if s in r.text]
        not_zip = client.post("/v1/admin/roster/bad-d", params={"as_of": "2025-09-01"},
                              content=b"id,name\n", headers=auth("admin") | ZIP)  # fmt: skip
        assert not_zip.json()["error"]["code"] == "invalid_roster"
        too_big = client.post("/v1/admin/roster/bad-d", params={"as_of": "2025-09-01"},
                              content=bytes(65 * 1024), headers=auth("admin") | ZIP)  # fmt: skip
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
        after = client.get("/v1/audit/verify", params={"district_id": "bad-d"},
                           headers=auth("admin")).json()["head_position"]  # fmt: skip
        assert after == head
        schools = client.get("/v1/schools", params={"district_id": "bad-d"}, headers=auth("admin"))
        assert schools.json()["schools"] == []


def without_ids(value: Any) -> Any:
    """A metrics answer minus what names the district or its ledger position."""
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items()
                if k not in ("district_id", "as_of_position", "head_hash")}  # fmt: skip
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def as_district(events: list[dict[str, Any]], district: str) -> list[dict[str, Any]]:
    """The same facts for another district, under fresh event ids."""
    ns = UUID(int=1)
    return [e | {"district_id": district, "event_id": str(uuid5(ns, e["event_id"]))}
            for e in events]  # fmt: skip


def test_imported_history_equals_the_same_history_posted_through_the_api(
    store_url: str, chdb_url: str, tmp_path: Path
) -> None:
    events = truth("imported-d", students=400, days=14)
    source = vendor_csv(tmp_path / "sessions.csv", events)
    roster = generated_bundle({f"sch-{i:02d}": 30 for i in range(1, 9)}).zip_bytes()
    with served(store_url, chdb_url, tmp_path) as client:
        for d in ("imported-d", "posted-d"):
            r = client.post(f"/v1/admin/roster/{d}", params={"as_of": "2026-02-01"},
                            content=roster, headers=auth("admin") | ZIP)  # fmt: skip
            assert r.status_code == 200, r.text
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        job = SessionImport(runtime.ledger, source, converter("imported-d"), tmp_path / "r.json")
        assert job.run()["events"]["accepted"] == len(events)
        posted = as_district(events, "posted-d")
        for i in range(0, len(posted), 1000):
            r = client.post("/v1/events", json={"events": posted[i : i + 1000]},
                            headers=auth("emitter"))  # fmt: skip
            assert {x["status"] for x in r.json()["results"]} == {"accepted"}
        head = runtime.sync()
        answers = {}
        for d in ("imported-d", "posted-d"):
            _, answers[d] = metric_answers(runtime, d, date(2026, 9, 1), date(2026, 10, 31), head)
        assert answers["imported-d"]["participation"]["sessions_requested"] > 500
        assert answers["imported-d"]["participation"]["enrolled"] == 241
        assert without_ids(answers["imported-d"]) == without_ids(answers["posted-d"])
        again = SessionImport(runtime.ledger, source, converter("imported-d"), tmp_path / "r2.json")
        assert again.run()["events"] == {"accepted": 0, "duplicate": len(events), "rejected": 0}
        assert runtime.ledger_head() == head


def test_importer_and_api_with_the_same_events_build_the_same_chain(
    store_url: str, second_store_url: str, chdb_url: str, tmp_path: Path
) -> None:
    d = "chain-d"
    source = vendor_csv(tmp_path / "sessions.csv", truth(d, students=300))
    imported = open_ledger(Settings(event_store=store_url))
    try:
        report = SessionImport(
            imported, source, converter(d), tmp_path / "r.json", provider="tutorcom"
        ).run()
        expected = chain_head(imported, d)
        imported_events = events_in_order(imported, d)
    finally:
        imported.close()
    with served(second_store_url, chdb_url, tmp_path) as client:
        for batch in batches(source, converter(d)):
            r = client.post("/v1/events", json={"events": batch.events}, headers=auth("emitter"))
            assert {x["status"] for x in r.json()["results"]} == {"accepted"}
        verify = client.get("/v1/audit/verify", params={"district_id": d}, headers=auth("admin"))
        assert verify.json()["ok"] is True
        # Same positions, same events; the hashes differ since each ledger draws its own
        # student tokens, keys and nonces (sealed storage).
        assert verify.json()["head_position"] == expected[0]
    posted = open_ledger(Settings(event_store=second_store_url))
    try:
        posted_events = events_in_order(posted, d)
    finally:
        posted.close()
    # The same events but for who recorded them: the import, or the emitter key.
    assert {e["provenance"]["via"] for _, e in posted_events} == {"api"}
    assert [e["provenance"] for _, e in imported_events] == [report["provenance"]] * len(
        imported_events
    )

    def unnamed(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        return [(i, {k: v for k, v in e.items() if k != "provenance"}) for i, e in events]

    assert unnamed(posted_events) == unnamed(imported_events)
