"""The metrics catalogue over HTTP: every figure equals the independent reference, on many
filter combinations, as JSON and CSV, as of earlier positions, and whatever the delivery order.

chdb holds one data dir per process, so the module shares ONE app; each test that writes uses
its own district ids.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import reference_insight as insight
import reference_metrics as ref
import reference_standard as standard
from builders import exact, write_keys
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metric_events import TZ, district, edge_batches, interleave, retarget
from reference import participation as ref_participation

from tutorledger.api.app import create_app
from tutorledger.api.http.routes.metrics import every_metric, resolve_filters
from tutorledger.api.metrics.registry import METRICS, WITH_FILTERS
from tutorledger.api.metrics.scope import Scope
from tutorledger.infra.settings import Settings

KEY = "metrics-dashboard-key-0000"
CHICAGO_HOURS = {"days": [1, 2, 3, 4], "start": "09:00", "end": "14:45"}
GEN, CHI, EDGE = "m-gen", "m-chi", "m-edge"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("metrics")
    keys = write_keys(tmp / "keys.json", [{"key": KEY, "role": "admin", "districts": ["*"]}])
    districts = tmp / "districts.json"
    districts.write_text(
        json.dumps(
            {
                CHI: {
                    "time_zone": "America/Chicago",
                    "school_hours": CHICAGO_HOURS,
                    "dosage_target_minutes": 30,
                }
            }
        )
    )
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{tmp}/ch?database=metrics",
        api_keys_file=keys,
        districts_file=districts,
        var_dir=tmp / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


def post_batches(client: TestClient, batches: list[list[dict[str, Any]]]) -> list[Any]:
    """Post each batch; returns (position after it, accepted events so far) per batch."""
    accepted: list[dict[str, Any]] = []
    marks = []
    for batch in batches:
        response = client.post("/v1/events", json={"events": batch}, headers=HEADERS)
        assert response.status_code == 200, response.text
        body = response.json()
        for event, result in zip(batch, body["results"], strict=True):
            assert result["status"] in ("accepted", "duplicate"), result
            if result["status"] == "accepted":
                accepted.append(event)
        marks.append((body["position"], list(accepted)))
    return marks


@pytest.fixture(scope="module")
def loaded(client: TestClient) -> dict[str, Any]:
    """The generated district (NY and Chicago copies) and the edge cases, in odd batches."""
    gen = district(GEN).events
    sizes = [997, 13, 1000, 400]
    batches, i = [], 0
    while i < len(gen):
        size = sizes[len(batches) % len(sizes)]
        batches.append(gen[i : i + size])
        i += size
    marks = post_batches(client, batches)
    chi = district(CHI, tz="America/Chicago", seed=11).events
    post_batches(client, [chi[i : i + 1000] for i in range(0, len(chi), 1000)])
    edge = post_batches(client, edge_batches(EDGE))
    return {GEN: marks[-1][1], "marks": marks, CHI: chi, EDGE: edge[-1][1], "edge_marks": edge}


def get(client: TestClient, metric: str, **params: Any) -> Any:
    response = client.get(f"/v1/metrics/{metric}", params=params, headers=HEADERS)
    assert response.status_code == 200, response.text
    return exact(response.json())


def query(f: dict[str, Any]) -> dict[str, Any]:
    """Reference filter kwargs → query parameters."""
    names = {"date_from": "from", "date_to": "to"}
    return {names.get(k, k): v.isoformat() if isinstance(v, date) else v for k, v in f.items()}


def same(actual: Any, expected: Any) -> None:
    assert actual == json.loads(json.dumps(expected, default=str))


FILTERS: list[dict[str, Any]] = [
    {},
    {"school_id": "sch-03"},
    {"subject": "geometry"},
    {"grade": 7},
    {"date_from": date(2026, 10, 30), "date_to": date(2026, 11, 2)},  # across the DST change
    {"date_from": date(2026, 11, 1), "date_to": date(2026, 11, 1)},  # the 25-hour day
    {"school_id": "sch-03", "subject": "geometry"},
    {"school_id": "sch-01", "grade": 3, "date_from": date(2026, 10, 20)},
    {"subject": "reading", "date_to": date(2026, 10, 25)},
    {"school_id": "no-such-school"},
]
GROUPS = {"school": ("school",), "subject": ("subject",), "school,subject": ("school", "subject")}


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_grouped_metrics_equal_reference(
    client: TestClient, loaded: dict[str, Any], f: dict[str, Any]
) -> None:
    events = loaded[GEN]
    for group_by, names in [(None, None), *GROUPS.items()]:
        params = {"district_id": GEN, **query(f)}
        if group_by:
            params["group_by"] = group_by
        for metric, compute in [("wait-times", ref.wait_times), ("satisfaction", ref.satisfaction)]:
            body = get(client, metric, **params)
            same(body["rows"], compute(events, GEN, TZ, names or (), **f))
            assert body["group_by"] == list(names or ())
        demand = get(client, "demand", **params)
        same(demand["rows"], ref.demand(events, GEN, TZ, names or ("school", "subject"), **f))


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_timing_engagement_participation_equal_reference(
    client: TestClient, loaded: dict[str, Any], f: dict[str, Any]
) -> None:
    events, params = loaded[GEN], {"district_id": GEN, **query(f)}
    timing = get(client, "timing", **params)
    expected = ref.timing(events, GEN, TZ, **f)
    same({k: timing[k] for k in expected}, expected)
    assert timing["school_hours"] == ref.DEFAULT_HOURS and timing["time_zone"] == TZ
    engagement = get(client, "engagement", **params)
    same(
        {k: engagement[k] for k in ("students", "regular_students", "one_time_students", "rows")},
        ref.engagement(events, GEN, TZ, **f),
    )
    dosage = get(client, "dosage", **params)
    same(_figures(dosage), insight.dosage(events, GEN, TZ, **f))
    participation = get(client, "participation", **params)
    expected = ref_participation(events, [], GEN, TZ, **f)
    for key in ("students_served", "sessions_requested", "sessions_matched", "sessions_completed"):
        assert participation[key] == expected[key]


def _bare(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "suppressed"}


def _figures(body: dict[str, Any]) -> dict[str, Any]:
    envelope = ("district_id", "as_of_position", "head_hash", "filters", "suppressed")
    rows = [{k: v for k, v in r.items() if k != "suppressed"} for r in body["rows"]]
    return {**{k: v for k, v in body.items() if k not in envelope}, "rows": rows}


def test_hotspot_school_has_geometry_lift(client: TestClient, loaded: dict[str, Any]) -> None:
    rows = get(client, "demand", district_id=GEN, subject="geometry", group_by="school")["rows"]
    by_school = {r["school_id"]: r["lift"] for r in rows}
    assert max(by_school, key=by_school.__getitem__) == "sch-03"
    assert by_school["sch-03"] > 2 > max(v for k, v in by_school.items() if k != "sch-03")


def test_district_time_zone_and_school_hours_from_file(
    client: TestClient, loaded: dict[str, Any]
) -> None:
    events = loaded[CHI]
    chicago = "America/Chicago"
    timing = get(client, "timing", district_id=CHI)
    same(
        {k: timing[k] for k in ("rows", "after_school_share")},
        {
            k: ref.timing(events, CHI, chicago, CHICAGO_HOURS)[k]
            for k in ("rows", "after_school_share")
        },
    )
    assert timing["time_zone"] == chicago and timing["school_hours"] == CHICAGO_HOURS
    dosage = get(client, "dosage", district_id=CHI)
    assert dosage["target_minutes"] == 30
    same(_figures(dosage), insight.dosage(events, CHI, chicago, target=30))
    f = {"date_from": date(2026, 11, 1), "date_to": date(2026, 11, 1)}
    body = get(client, "engagement", district_id=CHI, **query(f))
    assert body["filters"]["time_zone"] == chicago
    same(body["rows"], ref.engagement(events, CHI, chicago, **f)["rows"])
    same(
        get(client, "wait-times", district_id=CHI, **query(f))["rows"],
        ref.wait_times(events, CHI, chicago, **f),
    )


def test_edge_cases_equal_reference_and_known_values(
    client: TestClient, loaded: dict[str, Any]
) -> None:
    events = loaded[EDGE]
    waits = get(client, "wait-times", district_id=EDGE)["rows"][0]
    same([waits], ref.wait_times(events, EDGE, TZ))
    # dst-a waited 40 min 0.5 s across the fall-back; subsec 0.2 s; midnight 0.2005 s.
    assert (waits["requests"], waits["unmatched"], waits["max"]) == (18, 14, 2400.5)
    assert waits["p50"] == 0.2005  # nearest rank: 2nd of [0.2, 0.2005, 150, 2400.5]
    timing = get(client, "timing", district_id=EDGE)
    same(
        {k: timing[k] for k in ("rows", "after_school_requests")},
        {k: ref.timing(events, EDGE, TZ)[k] for k in ("rows", "after_school_requests")},
    )
    cells = {(c["weekday"], c["hour"]): c for c in timing["rows"]}
    assert cells[(7, 1)]["requests"] == 2  # both 01:xx on the 25-hour day
    assert (cells[(2, 15)]["requests"], cells[(2, 15)]["in_school_requests"]) == (2, 1)
    assert (cells[(2, 7)]["in_school_requests"], cells[(2, 8)]["in_school_requests"]) == (0, 1)
    assert cells[(6, 23)]["requests"] == 1  # Saturday 23:59:59.9995 stays on Saturday
    engagement = get(client, "engagement", district_id=EDGE)
    same(
        {k: engagement[k] for k in ("students", "regular_students", "one_time_students", "rows")},
        ref.engagement(events, EDGE, TZ),
    )
    assert engagement["regular_students"] == 1
    w44 = next(r for r in engagement["rows"] if r["week"] == "2026-W44")
    assert w44["requests"] == 12  # Mon 10-26 … Sun 11-01 23:30 local (Monday in UTC)
    dosage = get(client, "dosage", district_id=EDGE)
    same(_figures(dosage), insight.dosage(events, EDGE, TZ))
    # dst-a: matched 01:10:00.75 EST, completed 01:50 EST → 39 min 59.25 s; subsec: 29 min
    # 58.9 s; midnight: 39 min 59.8 s (three students, one session each).
    assert dosage["sessions_completed"] == 3 and dosage["length_p50"] == 39.9875  # the 2nd of 3
    sat = get(client, "satisfaction", district_id=EDGE)["rows"][0]
    assert (sat["completed"], sat["surveys"], sat["helped_rate"], sat["mean_rating"]) == (
        3,
        2,
        0.5,
        3.5,
    )


def test_as_of_position_reproduces_earlier_figures(
    client: TestClient, loaded: dict[str, Any]
) -> None:
    for position, events in [loaded["marks"][1], loaded["edge_marks"][1]]:
        d = events[0]["district_id"]
        body = get(client, "wait-times", district_id=d, as_of_position=position, group_by="school")
        assert body["as_of_position"] == position and body["head_hash"]
        same(body["rows"], ref.wait_times(events, d, TZ, ("school",)))
        sat = get(client, "satisfaction", district_id=d, as_of_position=position)
        same(sat["rows"], ref.satisfaction(events, d, TZ))
        eng = get(client, "engagement", district_id=d, as_of_position=position)
        same(eng["rows"], ref.engagement(events, d, TZ)["rows"])
        dosage = get(client, "dosage", district_id=d, as_of_position=position)
        same(_figures(dosage), insight.dosage(events, d, TZ))


@pytest.mark.parametrize("metric", [m.name for m in WITH_FILTERS])
def test_csv_has_the_json_rows(client: TestClient, loaded: dict[str, Any], metric: str) -> None:
    params = {"district_id": GEN, "from": "2026-10-26", "to": "2026-11-08"}
    body = get(client, metric, **params)
    by_param = client.get(
        f"/v1/metrics/{metric}", params={**params, "format": "csv"}, headers=HEADERS
    )
    by_accept = client.get(
        f"/v1/metrics/{metric}", params=params, headers={**HEADERS, "Accept": "text/csv"}
    )
    assert by_param.status_code == 200 and by_param.text == by_accept.text
    assert by_param.headers["content-type"].startswith("text/csv")
    assert by_param.headers["x-as-of-position"] == str(body["as_of_position"])
    table = list(csv.DictReader(io.StringIO(by_param.text)))
    rows = body.get("rows", [body])
    assert len(table) == len(rows) > 0
    for line, row in zip(table, rows, strict=True):
        assert line["as_of_position"] == str(body["as_of_position"])
        assert line["head_hash"] == body["head_hash"]
        for key, value in row.items():
            if isinstance(value, dict | list):
                continue
            assert line[key] == ("" if value is None else str(value)), (key, line, row)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("demand", {"from": "2026-11-02", "to": "2026-11-01"}),
        ("wait-times", {"from": "2026-13-01"}),
        ("satisfaction", {"to": "yesterday"}),
        ("timing", {"grade": 13}),
        ("engagement", {"grade": -1}),
        ("demand", {"group_by": "teacher"}),
        ("wait-times", {"group_by": "school,school"}),
        ("satisfaction", {"group_by": ""}),
        ("timing", {"format": "xml"}),
        ("engagement", {"as_of_position": -5}),
        ("demand", {"district_id": "bad district!"}),
    ],
)
def test_bad_filters_are_422_in_contract_shape(
    client: TestClient, path: str, params: dict[str, Any]
) -> None:
    response = client.get(
        f"/v1/metrics/{path}", params={"district_id": GEN, **params}, headers=HEADERS
    )
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error"}
    assert response.json()["error"]["code"] == "invalid_request"


def test_unknown_metric_is_404_in_contract_shape(client: TestClient) -> None:
    response = client.get("/v1/metrics/happiness", params={"district_id": GEN}, headers=HEADERS)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_openapi_documents_definitions(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "nearest-rank" in paths["/v1/metrics/wait-times"]["get"]["description"]
    assert "lift" in paths["/v1/metrics/demand"]["get"]["description"]
    assert "text/csv" in paths["/v1/metrics/timing"]["get"]["responses"]["200"]["content"]


BASE = district("m-prop", students=30, seed=3).events + [
    e for batch in edge_batches("m-prop") for e in batch
]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 400), max_size=6))
def test_any_batching_and_order_gives_the_same_figures(
    client: TestClient, seed: int, cuts: list[int]
) -> None:
    rng = random.Random(seed)
    d = f"p-{uuid.uuid4().hex[:12]}"
    events = interleave(retarget(BASE, d), rng)
    events += rng.sample(events, k=len(events) // 20)  # resends
    bounds = sorted({0, len(events), *(c % len(events) for c in cuts)})
    post_batches(client, [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False)])
    for group_by in ("school", "subject"):
        names = (group_by,)
        same(
            get(client, "demand", district_id=d, group_by=group_by)["rows"],
            ref.demand(events, d, TZ, names),
        )
        same(
            get(client, "wait-times", district_id=d, group_by=group_by)["rows"],
            ref.wait_times(events, d, TZ, names),
        )
    same(get(client, "satisfaction", district_id=d)["rows"], ref.satisfaction(events, d, TZ))
    same(get(client, "timing", district_id=d)["rows"], ref.timing(events, d, TZ)["rows"])
    same(get(client, "engagement", district_id=d)["rows"], ref.engagement(events, d, TZ)["rows"])


def test_every_metric_answers_as_the_routes_do(client: TestClient, loaded: dict[str, Any]) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    filters, head_hash, _ = resolve_filters(runtime, EDGE, None, None, None, None, None, None)
    scope = Scope(filters, head_hash, runtime.settings.district(EDGE), csv=False, role="admin")
    bodies = every_metric(runtime.projections, scope)
    for name, body in bodies.items():
        assert exact(body.model_dump(mode="json")) == get(client, name, district_id=EDGE), name


Pair = tuple[Any, Any]  # (what the API answered, what the reference fold of the events gives)
REFERENCES: dict[str, Any] = {
    "participation": lambda body, events, f: (
        {k: body[k] for k in ("students_served", "sessions_requested", "sessions_matched")},
        {
            k: ref_participation(events, [], GEN, TZ, **f)[k]
            for k in ("students_served", "sessions_requested", "sessions_matched")
        },
    ),
    "demand": lambda body, events, f: (
        body["rows"],
        ref.demand(events, GEN, TZ, ("school", "subject"), **f),
    ),
    "wait-times": lambda body, events, f: (body["rows"], ref.wait_times(events, GEN, TZ, **f)),
    "satisfaction": lambda body, events, f: (body["rows"], ref.satisfaction(events, GEN, TZ, **f)),
    "timing": lambda body, events, f: (
        {k: body[k] for k in ("rows", "by_hour", "by_weekday", "after_school_share")},
        {
            k: ref.timing(events, GEN, TZ, **f)[k]
            for k in ("rows", "by_hour", "by_weekday", "after_school_share")
        },
    ),
    "engagement": lambda body, events, f: (
        {k: body[k] for k in ("students", "regular_students", "one_time_students", "rows")},
        ref.engagement(events, GEN, TZ, **f),
    ),
    "dosage": lambda body, events, f: (_figures(body), insight.dosage(events, GEN, TZ, **f)),
    "dosage-standard": lambda body, events, f: (
        {k: [_bare(r) for r in body[k]] for k in ("rows", "weeks")},
        {k: v for k, v in standard.standard(events, GEN, TZ, **f).items() if k != "counted_weeks"},
    ),
}
# Compared with their reference fold elsewhere (they need more than session events).
ELSEWHERE = {
    "outcomes": "test_outcomes.py::test_outcomes_equal_the_fold_and_show_the_association",
    "equity-gaps": "test_student_groups_api.py::test_equity_gaps_equal_an_independent_fold",
}


def test_every_registered_metric_has_a_reference_fold() -> None:
    assert set(REFERENCES) | set(ELSEWHERE) == set(METRICS)
    assert not set(REFERENCES) & set(ELSEWHERE)


@pytest.mark.parametrize("metric", [m.name for m in WITH_FILTERS])
@pytest.mark.parametrize("f", FILTERS[:4], ids=lambda f: ",".join(f) or "none")
def test_every_metric_equals_the_reference_fold(
    client: TestClient, loaded: dict[str, Any], metric: str, f: dict[str, Any]
) -> None:
    """Each registry entry's default answer equals the fold of the raw events."""
    body = get(client, metric, district_id=GEN, **query(f))
    actual, expected = REFERENCES[metric](body, loaded[GEN], f)
    same(actual, expected)
