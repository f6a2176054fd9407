"""The metric registry: every entry is documented and protected, and one declaration is all a
new metric needs (walked through with a toy metric: route, docs, CSV, suppression).

Figures against the reference fold, CSV rows and small-cell suppression of every registered
metric are checked registry-driven in test_metrics_api.py and test_suppression.py.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from builders import write_keys
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tutorledger.api.app import create_app
from tutorledger.api.http.routes.metrics import metric_router
from tutorledger.api.metrics.docs import COMMON, GROUPING
from tutorledger.api.metrics.registry import METRICS, WITH_FILTERS, Keys, Metric
from tutorledger.api.metrics.schemas import Count, MetricResponse
from tutorledger.api.metrics.scope import Scope
from tutorledger.api.metrics.suppression import Plan, Unprotected, suppress_metric
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.infra.settings import Settings
from tutorledger.projections.demand import demand

K = 10
DISTRICT = "toy-d"
KEYS = {"dashboard": "registry-dashboard-key-000", "auditor": "registry-auditor-key-00000"}
OTHER = "registry-other-district-key"


# -- the toy metric: everything it needs is this one declaration ---------------------------


class ToyRow(BaseModel):
    school_id: str | None
    subject: str | None
    requests: Count
    suppressed: bool = False


class Toy(MetricResponse):
    group_by: list[str]
    rows: list[ToyRow]


def toy_compute(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    rows = [
        {"school_id": r["school_id"], "subject": r["subject"], "requests": r["requests"]}
        for r in demand(store, scope.filters, keys)
    ]
    names = [n for n, c in (("school", "school_id"), ("subject", "subject")) if c in keys]
    return Toy(**scope.envelope(), group_by=names, rows=rows)


def toy_planner(plan: Plan, body: dict[str, Any]) -> None:
    """Every row's requests in one line: their sum is the district's requests."""
    plan.lines.append([plan.cell(r, "requests") for r in body["rows"]])


TOY = Metric[Keys](
    name="toy-requests",
    summary="Requests per group (a toy)",
    definition="`requests` per group. Example: 3 requests at sch-01 → one row of 3.",
    response=Toy,
    compute=toy_compute,
    planner=toy_planner,
    group_by=("school_id",),
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app plus the router generated for the toy (and for a toy without a planner)."""
    tmp = tmp_path_factory.mktemp("registry")
    (tmp / "districts.json").write_text(json.dumps({DISTRICT: {"suppression_threshold": K}}))
    keys = [{"key": v, "role": k, "districts": ["*"]} for k, v in KEYS.items()]
    keys.append({"key": OTHER, "role": "dashboard", "districts": ["elsewhere"]})
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{tmp}/ch",
        api_keys_file=write_keys(tmp / "keys.json", keys),
        districts_file=tmp / "districts.json",
        var_dir=tmp / "var",
    )
    app = create_app(settings)
    unplanned = replace(TOY, name="toy-unplanned", planner=None)
    app.include_router(metric_router([TOY, unplanned]))
    with TestClient(app) as c:
        events = generate(DistrictSpec(district_id=DISTRICT, students=60, schools=3, days=14))
        ledger = c.app.state.runtime.ledger  # type: ignore[attr-defined]
        for i in range(0, len(events.events), 1000):
            ledger.record_events(events.events[i : i + 1000])
        yield c


def read(client: TestClient, key: str, name: str, **params: Any) -> Any:
    return client.get(
        f"/v1/metrics/{name}",
        params={"district_id": DISTRICT, **params},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_a_toy_metric_gets_its_route_docs_csv_and_suppression(client: TestClient) -> None:
    # Route, with the shared filters and its group_by (default: by school).
    default = read(client, KEYS["auditor"], TOY.name)
    assert default.status_code == 200, default.text
    assert default.json()["group_by"] == ["school"] and len(default.json()["rows"]) == 3
    body = read(client, KEYS["auditor"], TOY.name, group_by="school,subject").json()
    assert body["group_by"] == ["school", "subject"]
    assert read(client, KEYS["auditor"], TOY.name, group_by="teacher").status_code == 422
    assert read(client, OTHER, TOY.name).status_code == 403  # the district-scope dependency
    # OpenAPI text: summary, definition with its example, grouping and filter help.
    op = client.get("/openapi.json").json()["paths"][f"/v1/metrics/{TOY.name}"]["get"]
    assert op["summary"] == TOY.summary
    assert op["description"] == TOY.definition + GROUPING + COMMON
    assert {p["name"] for p in op["parameters"]} >= {"district_id", "group_by", "cohort_id"}
    # CSV: the JSON rows.
    table = read(client, KEYS["auditor"], TOY.name, group_by="school,subject", format="csv")
    lines = list(csv.DictReader(io.StringIO(table.text)))
    assert [int(line["requests"]) for line in lines] == [r["requests"] for r in body["rows"]]
    # Suppression for a dashboard key, by the toy's own planner.
    shown = read(client, KEYS["dashboard"], TOY.name, group_by="school,subject").json()
    small = [r for r in body["rows"] if 0 < r["requests"] < K]
    assert small, "the fixture must have a small cell for this test to mean anything"
    for got, want in zip(shown["rows"], body["rows"], strict=True):
        # Small cells are withheld; others are exact or withheld by the complementary and
        # neighbour rules (docs/privacy.md), never changed.
        assert got["requests"] in (
            (None,) if 0 < want["requests"] < K else (None, want["requests"])
        )
    hidden = [r for r in shown["rows"] if r["requests"] is None]
    assert shown["suppressed"] is True and len(hidden) != 1  # complementary: never one alone


def test_suppression_refuses_a_metric_without_a_planner(client: TestClient) -> None:
    refused = read(client, KEYS["dashboard"], "toy-unplanned")
    assert refused.status_code == 500
    assert refused.json()["error"]["code"] == "metric_unprotected"
    assert "requests" not in refused.text
    assert read(client, KEYS["auditor"], "toy-unplanned").status_code == 200  # exact roles
    body = Toy(district_id="d", as_of_position=0, head_hash=None, filters={}, group_by=[], rows=[])
    with pytest.raises(Unprotected):
        suppress_metric(replace(TOY, planner=None), body, "dashboard", K)


@pytest.mark.parametrize("metric", METRICS.values(), ids=lambda m: m.name)
def test_every_metric_is_documented_and_planned(client: TestClient, metric: Metric[Any]) -> None:
    op = client.get("/openapi.json").json()["paths"][f"/v1/metrics/{metric.name}"]["get"]
    assert op["summary"] == metric.summary
    assert metric.definition.strip() in op["description"]
    assert "Example" in metric.definition  # a worked example, for checking a published figure
    assert callable(metric.planner)
    assert "text/csv" in op["responses"]["200"]["content"]
    has_group_by = any(p["name"] == "group_by" for p in op["parameters"])
    assert has_group_by == (metric.group_by is not None)


@pytest.mark.parametrize("metric", WITH_FILTERS, ids=lambda m: m.name)
def test_every_metric_withholds_small_cells_from_dashboards(
    client: TestClient, metric: Metric[Keys]
) -> None:
    """On a small slice every metric has small counts; a dashboard key sees some withheld."""
    small = {"grade": 4}  # 9 requests in the district
    shown = read(client, KEYS["dashboard"], metric.name, **small).json()
    exact = read(client, KEYS["auditor"], metric.name, **small).json()
    assert shown["suppressed"] is True, metric.name
    assert exact["suppressed"] is False
