"""Small-cell suppression: dashboard keys never see a count below the threshold, nor any
figure from which one could be recomputed; auditors see exact figures.

The district is generated small on purpose (a few students per school and subject), and
every metric of the registry that takes the shared filters, with every grouping it accepts,
is read twice: by a dashboard key and by an auditor key (outcomes, which needs grades, is
checked the same way in test_outcomes.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from builders import role_keys, write_keys
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorledger.api.metrics import schemas as ms
from tutorledger.api.metrics.registry import DEMAND, WITH_FILTERS, Keys, Metric
from tutorledger.api.metrics.suppression import suppress_metric
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.infra.settings import Settings

K = 10
DISTRICT = "small-d"
KEYS = {"dashboard": "suppress-dashboard-key-000", "auditor": "suppress-auditor-key-0000"}
COUNTS = {
    "enrolled", "students_served", "sessions_requested", "sessions_matched",
    "sessions_completed", "sessions_cancelled", "requests", "completed", "students", "matched",
    "unmatched", "surveys", "helped", "in_school_requests", "after_school_requests",
    "weekly_active_students", "regular_students", "one_time_students", "active_students",
    "students_meeting_target",
}  # fmt: skip
# Counts whose sum over rows is published nowhere (a student is active in many weeks): no
# line to keep closed.
UNSUMMED = {"active_students", "students_meeting_target"}
DERIVED = {
    "reach_rate": ("students_served", "enrolled"),
    "sessions_per_served_student": ("sessions_requested", "students_served"),
    "share": ("requests",), "lift": ("requests",),
    "p50": ("matched",), "p90": ("matched",), "p99": ("matched",), "max": ("matched",),
    "helped_rate": ("helped", "surveys"), "mean_rating": ("surveys",),
    "survey_rate": ("surveys", "completed"), "after_school_share": ("after_school_requests",),
    "minutes_per_student": ("sessions_completed", "students_served"),
    "length_mean": ("sessions_completed",), "length_p50": ("sessions_completed",),
    "length_max": ("sessions_completed",),
}  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("suppression")
    districts = tmp / "districts.json"
    districts.write_text(json.dumps({DISTRICT: {"suppression_threshold": K}}))
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{tmp}/ch",
        api_keys_file=write_keys(tmp / "keys.json", role_keys(KEYS, "none")),
        districts_file=districts,
        var_dir=tmp / "var",
    )
    with TestClient(create_app_for(settings)) as c:
        generated = generate(DistrictSpec(district_id=DISTRICT, students=90, schools=3, days=21))
        ledger = c.app.state.runtime.ledger  # type: ignore[attr-defined]
        for school in generated.schools:
            ledger.put_school(DISTRICT, school["school_id"], school["name"],
                              school["enrollment"], school["as_of"])  # fmt: skip
        for i in range(0, len(generated.events), 1000):
            ledger.record_events(generated.events[i : i + 1000])
        yield c


def create_app_for(settings: Settings) -> Any:
    from tutorledger.api.app import create_app

    return create_app(settings)


def read(client: TestClient, key: str, metric: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {KEYS[key]}"}
    response = client.get(
        f"/v1/metrics/{metric}", params={"district_id": DISTRICT, **params}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def holders(body: Any) -> Iterator[dict[str, Any]]:
    """Every object in a response that holds figures."""
    if isinstance(body, dict):
        yield body
        for value in body.values():
            yield from holders(value)
    elif isinstance(body, list):
        for item in body:
            yield from holders(item)


def lines(rows: list[dict[str, Any]], name: str) -> list[list[int]]:
    """Sets of row indexes whose column sum the caller can learn elsewhere: all rows, and
    where rows are a two-way table, each of its rows and columns."""
    found = [list(range(len(rows)))]
    for a, b in (("school_id", "subject"), ("school_id", "provider"), ("weekday", "hour")):
        if not rows or rows[0].get(a) is None or rows[0].get(b) is None:
            continue
        for key in (a, b):
            by: dict[Any, list[int]] = defaultdict(list)
            for i, r in enumerate(rows):
                by[r[key]].append(i)
            found.extend(by.values())
    return found


def safe_lines(shown: list[dict[str, Any]], exact: list[dict[str, Any]], name: str) -> None:
    """No line of two or more cells has exactly one withheld cell, unless its total is small
    (withheld too) or zero (then every cell is known to be zero, withheld or not: a zero
    withheld beside a small count says nothing more). (A one-cell line is the total itself:
    closing a row identity may have to withhold it; see the limits in docs/privacy.md.)"""
    for line in lines(exact, name):
        if len(line) < 2:
            continue
        hidden = sum(shown[i][name] is None for i in line)
        total = sum(exact[i][name] for i in line)
        assert hidden != 1 or total < K, (name, [exact[i][name] for i in line])


def check(shown: Any, exact: Any) -> int:
    """Assert nothing small shows and nothing withheld can be recomputed; returns how many
    figures were withheld."""
    withheld = 0
    for s, e in zip(holders(shown), holders(exact), strict=True):
        for name, value in s.items():
            if name in COUNTS:
                assert value is None or value == e[name]
                assert value is None or not 0 < value < K, (name, value)
                withheld += value is None
            if name in DERIVED and value is not None:
                assert all(s[src] is not None for src in DERIVED[name] if src in s), name
        if any(s.get(n) is None for n in COUNTS if n in s) and "suppressed" in s:
            assert s["suppressed"] is True
    for key in ("rows", "by_hour", "by_weekday", "groups"):
        rows = shown.get(key) or []
        for name in COUNTS & set(rows[0] if rows else {}) - {"in_school_requests"} - UNSUMMED:
            safe_lines(rows, exact[key], name)
    if "after_school_requests" in shown:  # in-school cells + after school = all requests
        parts = [shown["after_school_requests"], *(r["in_school_requests"] for r in shown["rows"])]
        assert sum(v is None for v in parts) != 1
    for row in shown.get("rows", []):
        if {"requests", "matched", "unmatched"} <= set(row):  # requests = matched + unmatched
            assert sum(row[n] is None for n in ("requests", "matched", "unmatched")) != 1
    return withheld


def groupings(metric: Metric[Keys]) -> list[str | None]:
    """Its default, and each grouping when it takes `group_by`."""
    grouped = ["school", "subject", "school,subject"]
    if metric.options is None:  # the shared group_by (dosage-standard has its own)
        grouped.append("school,provider")
    return [None] + (grouped if metric.group_by is not None else [])


CASES = [(m.name, g) for m in WITH_FILTERS for g in groupings(m)]


@pytest.mark.parametrize(("metric", "group_by"), CASES)
@pytest.mark.parametrize("grade", [None, 7])
def test_dashboard_never_sees_a_small_cell(
    client: TestClient, metric: str, group_by: str | None, grade: int | None
) -> None:
    params = {k: v for k, v in {"group_by": group_by, "grade": grade}.items() if v is not None}
    shown = read(client, "dashboard", metric, **params)
    # The same figures exactly: at the (published) position the dashboard was answered at.
    exact = read(client, "auditor", metric, as_of_position=shown["as_of_position"], **params)
    check(shown, exact)
    assert not any(h.get("suppressed") for h in holders(exact))


def test_the_small_district_does_have_withheld_cells(client: TestClient) -> None:
    shown = read(client, "dashboard", "demand", group_by="school,subject")
    assert shown["suppressed"] is True
    at = shown["as_of_position"]
    exact = read(client, "auditor", "demand", group_by="school,subject", as_of_position=at)
    assert check(shown, exact) > 0
    csv_text = client.get(
        "/v1/metrics/demand",
        params={"district_id": DISTRICT, "format": "csv"},
        headers={"Authorization": f"Bearer {KEYS['dashboard']}"},
    ).text
    assert "suppressed" in csv_text.splitlines()[0] and ",True," in csv_text


# -- the rule itself, on arbitrary grids -------------------------------------------------------


def demand_grid(cells: list[list[int]]) -> ms.Demand:
    rows = [
        {"school_id": f"s{i}", "subject": f"t{j}", "requests": n, "completed": n // 2,
         "students": n, "share": 0.1, "lift": 1.0}
        for i, line in enumerate(cells) for j, n in enumerate(line)
    ]  # fmt: skip
    return ms.Demand(
        district_id="d", as_of_position=1, head_hash=None, filters={},
        group_by=["school", "subject"], rows=rows,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 40), min_size=3, max_size=3), min_size=1, max_size=5),
    st.integers(2, 15),
)
def test_no_line_of_a_grid_has_a_single_withheld_cell(cells: list[list[int]], k: int) -> None:
    body = demand_grid(cells)
    shown = suppress_metric(DEMAND, body, "dashboard", k).model_dump(mode="json")
    rows, exact_rows = shown["rows"], body.model_dump(mode="json")["rows"]
    for name in ("requests", "completed", "students"):
        for line in lines(exact_rows, name):
            if len(line) < 2:
                continue  # a one-cell line is a margin: see safe_lines
            hidden = sum(rows[i][name] is None for i in line)
            total = sum(exact_rows[i][name] for i in line)
            # A lone withheld cell is safe when its line is all zeros (no student to find)
            # or the line's total is itself withheld.
            assert hidden != 1 or total == 0 or 0 < total < k
        for row, original in zip(rows, body.rows, strict=True):
            value = getattr(original, name)
            if 0 < value < k:
                assert row[name] is None
    assert suppress_metric(DEMAND, body, "auditor", k) == body
