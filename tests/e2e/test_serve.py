"""End to end: the real `tutorledger` console script, over real HTTP, on real files.

A generated district is loaded through the API the way emitters and admins would; the
participation figures are then recomputed here, independently, in plain Python, from the
events the test knows were valid, and must match what the server reports, also after a
restart on the same files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import installed
import pytest
from builders import FIGURES, envelope, write_keys
from served import Server, kill, start_server, stop

from tutorledger.bench.district import District, DistrictSpec, generate

pytestmark = pytest.mark.e2e

TZ = ZoneInfo("America/New_York")
ADMIN_KEY = "e2e-admin-key-000000000000"
EMITTER_KEY = "e2e-emitter-key-0000000000"
DASHBOARD_KEY = "e2e-dashboard-key-00000000"
DISTRICT = "e2e-district"
OTHER = "e2e-other"


# -- the independent model -------------------------------------------------------------------


@dataclass
class SessionFacts:
    student: str
    school: str
    grade: int
    subject: str
    local_day: date
    matched: bool = False
    completed: bool = False
    cancelled: bool = False


@dataclass
class Model:
    """What the test knows was recorded, built from the valid events only."""

    sessions: dict[str, SessionFacts] = field(default_factory=dict)
    enrollment: dict[str, dict[str, int]] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["type"].removeprefix("session.")
        sid = event["session_id"]
        if kind == "requested":
            p = event["payload"]
            at = datetime.fromisoformat(event["occurred_at"]).astimezone(TZ)
            self.sessions[sid] = SessionFacts(
                p["student_id"], p["school_id"], p["grade"], p["subject"].lower(), at.date()
            )
        elif kind in ("matched", "completed", "cancelled"):
            setattr(self.sessions[sid], kind, True)

    def participation(
        self,
        school_id: str | None = None,
        subject: str | None = None,
        grade: int | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> dict[str, Any]:
        chosen = [
            s
            for s in self.sessions.values()
            if (school_id is None or s.school == school_id)
            and (subject is None or s.subject == subject)
            and (grade is None or s.grade == grade)
            and (date_from is None or s.local_day >= date_from)
            and (date_to is None or s.local_day <= date_to)
        ]
        enrolled = sum(
            count
            for school, by_grade in self.enrollment.items()
            if school_id is None or school == school_id
            for g, count in by_grade.items()
            if grade is None or int(g) == grade
        )
        served = len({s.student for s in chosen})
        requested = len(chosen)
        return {
            "enrolled": enrolled,
            "students_served": served,
            "reach_rate": pytest.approx(served / enrolled) if enrolled else None,
            "sessions_requested": requested,
            "sessions_matched": sum(s.matched for s in chosen),
            "sessions_completed": sum(s.completed for s in chosen),
            "sessions_cancelled": sum(s.cancelled for s in chosen),
            "sessions_per_served_student": pytest.approx(requested / served) if served else None,
        }


# -- loading a district over HTTP --------------------------------------------------------------


def keys_file(tmp: Path) -> Path:
    return write_keys(
        tmp / "api-keys.json",
        [
            {"key": ADMIN_KEY, "role": "admin", "districts": ["*"]},
            {"key": EMITTER_KEY, "role": "emitter", "districts": [DISTRICT, OTHER]},
            {"key": DASHBOARD_KEY, "role": "dashboard", "districts": [DISTRICT]},
        ],
    )


def put_schools(http: httpx.Client, district: District) -> None:
    for school in district.schools:
        response = http.put(
            f"/v1/schools/{district.spec.district_id}/{school['school_id']}",
            json={
                "name": school["name"],
                "enrollment": school["enrollment"],
                "as_of": school["as_of"].isoformat(),
            },
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert response.status_code == 200, response.text


def post_events(http: httpx.Client, events: list[Any]) -> list[dict[str, Any]]:
    response = http.post(
        "/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {EMITTER_KEY}"},
    )
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert len(results) == len(events)
    return results


def load_generated(http: httpx.Client, district: District, model: Model | None) -> None:
    """PUT schools, POST events in batches of 500; every first sending is accepted."""
    put_schools(http, district)
    if model is not None:
        model.enrollment = {s["school_id"]: dict(s["enrollment"]) for s in district.schools}
    seen: set[str] = set()
    events = district.events
    for i in range(0, len(events), 500):
        batch = events[i : i + 500]
        results = post_events(http, batch)
        for event, result in zip(batch, results, strict=True):
            assert result["event_id"] == event["event_id"]
            first = event["event_id"] not in seen
            assert result["status"] == ("accepted" if first else "duplicate"), (event, result)
            if first:
                seen.add(event["event_id"])
                if model is not None:
                    model.apply(event)


def bad_events(district: District, rng: random.Random) -> list[tuple[Any, str]]:
    """Events that must all be rejected (with the code expected) and change nothing."""
    d = district.spec.district_id
    by_session: dict[str, list[dict[str, Any]]] = {}
    for e in district.events:
        by_session.setdefault(e["session_id"], []).append(e)
    kinds = {sid: {e["type"] for e in evs} for sid, evs in by_session.items()}
    cancelled = [s for s, k in kinds.items() if "session.cancelled" in k]
    waiting = [s for s, k in kinds.items() if k == {"session.requested"}]
    completed = [s for s, k in kinds.items() if "session.completed" in k]
    assert cancelled and waiting and completed
    late = datetime(2027, 1, 1, 12, tzinfo=TZ).isoformat()

    def make(kind: str, sid: str, payload: Any, at: str = late) -> dict[str, Any]:
        return envelope(d, sid, kind, at, payload)

    first_request = by_session[waiting[0]][0]
    naive = make("requested", "bad-naive", dict(first_request["payload"]))
    naive["occurred_at"] = "2026-09-10T16:00:00"
    no_payload = make("matched", waiting[0], {"tutor_id": "tut-1"})
    del no_payload["payload"]
    early = datetime.fromisoformat(first_request["occurred_at"]) - timedelta(hours=1)
    return [
        (naive, "invalid_event"),
        (no_payload, "invalid_event"),
        ("not an object", "invalid_event"),
        (make("requested", "bad-grade", {**first_request["payload"], "grade": 14}),
         "invalid_event"),
        (make("matched", "ghost-session", {"tutor_id": "tut-1"}), "unknown_session"),
        (make("surveyed", "ghost-2", {"helped": True, "rating": 5}), "unknown_session"),
        (make("completed", rng.choice(cancelled), {"outcome": "resolved"}),
         "invalid_transition"),
        (make("surveyed", waiting[0], {"helped": True, "rating": 5}), "invalid_transition"),
        (make("matched", waiting[-1], {"tutor_id": "tut-1"}, early.isoformat()),
         "timestamp_regression"),
        (make("completed", rng.choice(completed), {"outcome": "partial"}), "already_recorded"),
        (make("requested", waiting[0], dict(first_request["payload"])), "already_recorded"),
        ({**first_request, "payload": {**first_request["payload"], "grade": 3}},
         "event_id_conflict"),
    ]  # fmt: skip


def participation(http: httpx.Client, key: str = ADMIN_KEY, **params: Any) -> dict[str, Any]:
    """Exact figures by default (admin): a dashboard key gets small cells withheld, and the
    per-school, per-day queries here are small."""
    response = http.get(
        "/v1/metrics/participation",
        params={"district_id": DISTRICT, **params},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def queries(spec: DistrictSpec) -> list[dict[str, Any]]:
    window = {
        "from": (spec.start + timedelta(days=3)).isoformat(),
        "to": (spec.start + timedelta(days=9)).isoformat(),
    }
    return [
        {},
        {"school_id": "sch-02"},
        {"grade": 7},
        {"subject": "geometry"},
        window,
        {"from": spec.start.isoformat(), "to": spec.start.isoformat()},
        {"school_id": "sch-03", "grade": 4, **window},
    ]


def expected_for(model: Model, params: dict[str, Any]) -> dict[str, Any]:
    return model.participation(
        school_id=params.get("school_id"),
        subject=params.get("subject"),
        grade=params.get("grade"),
        date_from=date.fromisoformat(params["from"]) if "from" in params else None,
        date_to=date.fromisoformat(params["to"]) if "to" in params else None,
    )


def test_district_over_http_matches_independent_figures_and_survives_restart(
    tmp_path: Path,
) -> None:
    spec = DistrictSpec(district_id=DISTRICT, students=300, schools=4, days=14, seed=20260907)
    district = generate(spec)
    other = generate(DistrictSpec(district_id=OTHER, students=40, schools=2, days=5, seed=3))
    rng = random.Random(99)
    model = Model()
    keys = keys_file(tmp_path)
    servers: list[Server] = []
    try:
        servers.append(start_server(tmp_path, keys, "first"))
        with httpx.Client(base_url=servers[-1].base_url, timeout=60) as http:
            load_generated(http, district, model)
            load_generated(http, other, None)  # a neighbour district that must not count

            bad = bad_events(district, rng)
            resends = rng.sample(district.events, 100)
            mixed: list[tuple[Any, str]] = [(e, "duplicate") for e in resends] + bad
            rng.shuffle(mixed)
            results = post_events(http, [e for e, _ in mixed])
            for (event, want), result in zip(mixed, results, strict=True):
                if want == "duplicate":
                    assert result["status"] == "duplicate", (event, result)
                else:
                    assert result["status"] == "rejected", (event, result)
                    assert result["error"]["code"] == want, (event, result)

            # Sanity of the model itself: it is not a trivial district.
            everything = model.participation()
            assert everything["sessions_requested"] > 500
            assert 0 < everything["sessions_cancelled"] < everything["sessions_requested"]

            published: dict[str, dict[str, Any]] = {}
            for params in queries(spec):
                body = participation(http, **params)
                got = {k: body[k] for k in FIGURES}
                assert got == expected_for(model, params), params
                published[json.dumps(params, sort_keys=True)] = body
            positions = {b["as_of_position"] for b in published.values()}
            hashes = {b["head_hash"] for b in published.values()}
            assert len(positions) == 1 and len(hashes) == 1
            assert len(next(iter(hashes))) == 64

        # Graceful: lifespan shutdown ran (uvicorn then re-raises SIGTERM, hence -15).
        assert stop(servers[-1]) in (0, -signal.SIGTERM), servers[-1].log()
        assert "Application shutdown complete" in servers[-1].log()

        servers.append(start_server(tmp_path, keys, "second"))
        with httpx.Client(base_url=servers[-1].base_url, timeout=60) as http:
            for key, before in published.items():
                after = participation(http, **json.loads(key))
                assert after == before, key
                pinned = participation(
                    http, **json.loads(key), as_of_position=before["as_of_position"]
                )
                assert pinned == before, key
            ready = http.get("/readyz").json()
            assert ready["ready"] is True
            assert ready["checks"]["projection_lag"] == 0
    finally:
        for server in servers:
            kill(server)


def test_server_refuses_requests_without_key_and_reports_health(tmp_path: Path) -> None:
    server = start_server(tmp_path, keys_file(tmp_path), "auth")
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            response = http.get("/v1/metrics/participation", params={"district_id": DISTRICT})
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
            assert http.get("/readyz").status_code == 200
            metrics = http.get("/metrics")
            assert "tutorledger_projection_lag_events" in metrics.text
            assert "/v1/events" in http.get("/openapi.json").json()["paths"]
    finally:
        kill(server)


# -- the command line --------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return subprocess.run(
        [str(installed.cli()), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        ((), ("serve", "demo")),
        (("serve",), ("--host", "--port")),
        (("demo",), ("--students", "--schools", "--days")),
    ],
    ids=["top", "serve", "demo"],
)
def test_cli_help(tmp_path: Path, args: tuple[str, ...], mentions: tuple[str, ...]) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    result = run_cli(*args, "--help", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in mentions:
        assert word in result.stdout, (word, result.stdout)


def test_cli_demo_is_idempotent(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTORLEDGER_")}
    env.update(
        TUTORLEDGER_EVENT_STORE=f"sqlite:///{tmp_path}/demo.db",
        TUTORLEDGER_CLICKHOUSE=f"chdb://{tmp_path}/projections",
        TUTORLEDGER_VAR_DIR=str(tmp_path / "var"),
        COLUMNS="200",
        NO_COLOR="1",
    )
    args = ("demo", "--students", "50", "--schools", "2", "--days", "3")
    first = run_cli(*args, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout.strip().splitlines()[-1])
    assert report["district_id"] == "demo-district"
    assert report["accepted"] > 0
    assert report["rejected"] == 0
    assert (tmp_path / "demo.db").exists()

    second = run_cli(*args, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert again["accepted"] == 0
    assert again["rejected"] == 0
    assert again["duplicate"] == report["accepted"] + report["duplicate"]
