"""Over HTTP with a ClickHouse 18.16 server behind the API (SQLite ledger, embedded
projector): dosage, both alert lists and an earlier position equal the reference."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import reference_insight as insight
from builders import exact, post_all, write_keys
from fastapi.testclient import TestClient
from insight_events import AT, insight_district
from metric_events import TZ

from tutorledger.api.app import create_app
from tutorledger.infra.settings import Settings

KEY = "ch-http-alerts-admin-key-0"
HEADERS = {"Authorization": f"Bearer {KEY}", "X-Purpose": "alert review"}
D = "ch-http"


@pytest.fixture
def client(tmp_path: Path, clickhouse_url: str) -> Iterator[TestClient]:
    settings = Settings(
        event_store=f"sqlite:///{tmp_path}/l.db",
        clickhouse=clickhouse_url,
        api_keys_file=write_keys(
            tmp_path / "k.json", [{"key": KEY, "role": "admin", "districts": ["*"]}]
        ),  # fmt: skip
        var_dir=tmp_path / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


def post(client: TestClient, events: list[dict[str, Any]]) -> int:
    return post_all(client, events, HEADERS)


def get(client: TestClient, path: str, **params: Any) -> Any:
    query = {"district_id": D, **{k: v for k, v in params.items() if v is not None}}
    response = client.get(path, params=query, headers=HEADERS)
    assert response.status_code == 200, response.text
    return exact(response.json())


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def school_view(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"kind": a["kind"], "scope": {k: v for k, v in a["scope"].items() if v is not None},
             "figures": a["figures"]} for a in body["alerts"]]  # fmt: skip


def student_view(body: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    return sorted((a["kind"], a["scope"]["subject"],
                   sorted(a["figures"].get("session_ids") or [a["scope"]["session_id"]]))
                  for a in body["alerts"])  # fmt: skip


def test_http_on_clickhouse_18_equals_the_reference(client: TestClient) -> None:
    assert "18.16" in str(client.app.state.runtime.projections.execute("SELECT version()"))  # type: ignore[attr-defined]
    events = insight_district(D, students=200)
    early = post(client, events[:-40])
    post(client, events[-40:])
    for position, prefix in ((None, events), (early, events[:-40])):
        at = {"at": AT.isoformat(), "as_of_position": position}
        dosage = get(client, "/v1/metrics/dosage", as_of_position=position)
        figures = {k: v for k, v in dosage.items() if k not in
                   ("district_id", "as_of_position", "head_hash", "filters")}  # fmt: skip
        figures["rows"] = [{k: v for k, v in r.items() if k != "suppressed"}
                           for r in figures["rows"]]  # fmt: skip
        assert figures == plain(insight.dosage(prefix, D, TZ))
        schools = get(client, "/v1/alerts", **at)
        assert school_view(schools) == plain(insight.school_alerts(prefix, D, TZ, AT))
        students = get(client, "/v1/alerts/students", **at)
        expected = insight.student_alerts(prefix, D, TZ, AT)
        assert student_view(students) == sorted(
            (a["kind"], a["subject"], a["session_ids"]) for a in expected
        )
    kinds = {a["kind"] for a in schools["alerts"] + get(client, "/v1/alerts/students")["alerts"]}
    assert {"long_waits", "falling_use", "repeated_subject", "long_session"} <= kinds
