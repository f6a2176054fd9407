"""`group_by` on participation, timing, engagement and dosage over HTTP (SQLite ledger, chdb):
ungrouped answers are unchanged, each group row equals the metric filtered to its values and
the independent reference fold, `margins` equal the rows without the roster-group split,
providers combine with one other dimension, and a dashboard key never sees a withheld group
cell that the published totals, margins or other cells give back.

chdb holds one data dir per process, so the module shares ONE app.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import group_by_events as gen
import pytest
import reference_metrics as ref
from builders import envelope, exact, write_keys
from fastapi.testclient import TestClient
from metric_events import TZ

from tutorledger.api.app import create_app
from tutorledger.api.http.bounds import GROUP_BY_PATTERN
from tutorledger.domain.errors import InvalidRequest
from tutorledger.infra.importers.student_groups import import_groups
from tutorledger.infra.settings import Settings
from tutorledger.projections.groups import parse_group_by

D = "gb-unit"
K = 10
KEYS = {
    "admin": "gb-admin-key-00000000000000",
    "dashboard": "gb-dashboard-key-0000000000",
    "vendor-a": "gb-emitter-vendor-a-0000000",
    "inhouse": "gb-emitter-inhouse-00000000",
    "": "gb-emitter-plain-0000000000",
}
METRICS = ("participation", "timing", "engagement", "dosage")
GROUPINGS = ("school", "subject", "provider", "school,provider", "subject,provider", "group",
             "group,school", "group,provider")  # fmt: skip
COLUMNS = {"school": "school_id", "subject": "subject", "group": "student_group",
           "provider": "provider"}  # fmt: skip
FILTER_OF = {"school_id": "school_id", "subject": "subject", "student_group": "group",
             "provider": "provider"}  # fmt: skip
COUNTS = {
    "participation": ("students_served", "sessions_requested", "sessions_matched",
                      "sessions_completed", "sessions_cancelled"),
    "timing": ("requests", "in_school_requests", "after_school_requests"),
    "engagement": ("students", "regular_students", "one_time_students", "requests"),
    "dosage": ("sessions_completed", "students_served"),
}  # fmt: skip
DERIVED = {
    "sessions_per_served_student": ("sessions_requested", "students_served"),
    "after_school_share": ("after_school_requests", "requests"),
    "minutes": ("sessions_completed",), "length_mean": ("sessions_completed",),
    "length_p50": ("sessions_completed",), "length_p90": ("sessions_completed",),
    "length_p99": ("sessions_completed",), "length_max": ("sessions_completed",),
    "minutes_per_student": ("sessions_completed", "students_served"),
}  # fmt: skip
REFERENCE = {
    "participation": ref.participation_groups, "timing": ref.timing_groups,
    "engagement": ref.engagement_groups, "dosage": ref.dosage_groups,
}  # fmt: skip


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("group-by")
    specs: list[dict[str, Any]] = [
        {"key": KEYS["admin"], "role": "admin", "districts": ["*"]},
        {"key": KEYS["dashboard"], "role": "dashboard", "districts": [D]},
    ]
    for provider in gen.PROVIDERS:
        spec = {"key": KEYS[provider], "role": "emitter", "districts": [D]}
        specs.append({**spec, "provider": provider} if provider else spec)
    districts = tmp / "districts.json"
    districts.write_text(json.dumps({D: {"time_zone": TZ, "suppression_threshold": K}}))
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=gb_unit",
        api_keys_file=write_keys(tmp / "keys.json", specs),
        districts_file=districts,
        var_dir=tmp / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def events(client: TestClient) -> list[dict[str, Any]]:
    """The district's events, each session's posted with its provider's emitter key."""
    chosen = gen.events(D)
    by_provider: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in chosen:
        by_provider[e["provenance"].get("provider", "")].append(e)
    for provider, bodies in by_provider.items():
        for i in range(0, len(bodies), 500):
            batch = [{k: v for k, v in e.items() if k != "provenance"} for e in bodies[i : i + 500]]
            r = client.post("/v1/events", json={"events": batch}, headers=auth(provider))
            assert r.status_code == 200, r.text
            assert {x["status"] for x in r.json()["results"]} == {"accepted"}, r.text
    return chosen


@pytest.fixture(scope="module")
def groups(
    client: TestClient, events: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, set[str]]:
    """The roster groups, imported as a OneRoster users file; then one later day's event so
    that dashboard keys (published positions) see them."""
    chosen = gen.roster(events)
    folder = tmp_path_factory.mktemp("roster")
    lines = ["sourcedId,status,role,givenName,grades,orgSourcedIds,metadata.ell,"
             "metadata.frl,metadata.foster"]  # fmt: skip
    students = sorted(set().union(*chosen.values()))
    for i, sid in enumerate(students):
        flags = [str(sid in chosen[c]).lower() for c in ("ell", "econ_disadv", "foster")]
        lines.append(",".join([sid, "active", "student", f"Name{i}", "05", "sch", *flags]))
    (folder / "users.csv").write_text("\n".join(lines) + "\n")
    ledger = client.app.state.runtime.ledger  # type: ignore[attr-defined]
    import_groups(ledger, folder, D, date(2026, 12, 1))
    later = envelope(D, "gb-after", "requested", "2026-12-20T10:00:00-05:00",
                     {"school_id": "sch-09", "student_id": "stu-gb-after", "grade": 5,
                      "subject": "algebra"})  # fmt: skip
    posted = client.post("/v1/events", json={"events": [later]}, headers=auth("admin"))
    assert posted.status_code == 200, posted.text
    return chosen


def get(client: TestClient, metric: str, key: str = "admin", **params: Any) -> Any:
    params = {k: v for k, v in params.items() if v is not None}
    r = client.get(f"/v1/metrics/{metric}", params={"district_id": D, **params},
                   headers=auth(key))  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


TO = {"to": "2026-12-01"}  # before the later day's event: the fold's sessions exactly


@pytest.mark.parametrize("metric", METRICS)
def test_an_ungrouped_answer_is_unchanged(
    client: TestClient, groups: dict[str, set[str]], metric: str
) -> None:
    body = get(client, metric, **TO)
    assert not {"group_by", "groups", "margins"} & set(body), sorted(body)
    grouped = get(client, metric, group_by="school", **TO)
    assert {k: v for k, v in grouped.items() if k not in ("group_by", "groups")} == body
    assert grouped["group_by"] == ["school"] and "margins" not in grouped
    table = client.get(f"/v1/metrics/{metric}", params={"district_id": D, "format": "csv", **TO},
                       headers=auth("admin")).text  # fmt: skip
    assert "school_id" not in table.splitlines()[0]


def _headline(metric: str, body: dict[str, Any]) -> dict[str, Any]:
    """The ungrouped answer's figures a group row has."""
    out = dict(body)
    if metric == "timing":
        out["in_school_requests"] = body["requests"] - body["after_school_requests"]
    if metric == "engagement":
        out["requests"] = sum(w["requests"] for w in body["rows"])
    return out


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("group_by", GROUPINGS)
def test_each_group_equals_the_metric_filtered_to_it(
    client: TestClient, groups: dict[str, set[str]], metric: str, group_by: str
) -> None:
    body = exact(get(client, metric, group_by=group_by, **TO))
    names = group_by.split(",")
    assert body["group_by"] == [n for n in COLUMNS if n in names]
    assert body["groups"]
    keys = [COLUMNS[n] for n in body["group_by"]]
    assert body["groups"] == sorted(body["groups"], key=lambda r: [r[k] for k in keys])
    checked = 0
    for row in body["groups"]:
        if row.get("provider") == "":
            continue  # '' (no provider) cannot be asked as a filter
        filters = {FILTER_OF[k]: row[k] for k in keys}
        alone = _headline(metric, exact(get(client, metric, **filters, **TO)))
        figures = {k: v for k, v in row.items() if k not in FILTER_OF}
        assert figures == {k: alone[k] for k in figures}, (filters, figures)
        checked += 1
    assert checked
    rest = ",".join(n for n in body["group_by"] if n != "group")
    if "group" in names:
        plain = exact(get(client, metric, group_by=rest or None, **TO))
        want = plain["groups"] if rest else [
            {**dict.fromkeys(FILTER_OF), **{k: _headline(metric, plain)[k]
                                            for k in body["margins"][0] if k not in FILTER_OF}}
        ]  # fmt: skip
        assert body["margins"] == want
    else:
        assert "margins" not in body


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("group_by", ["school", "subject", "provider", "school,provider"])
def test_groups_equal_the_reference_fold(
    client: TestClient, events: list[Any], groups: Any, metric: str, group_by: str
) -> None:
    f = {"date_from": date(2026, 10, 19), "date_to": date(2026, 12, 1)}
    body = exact(get(client, metric, group_by=group_by, **{"from": "2026-10-19", **TO}))
    want = REFERENCE[metric](events, D, TZ, tuple(group_by.split(",")), **f)
    assert body["groups"] == json.loads(json.dumps(want)) and want


def test_the_roster_group_rows_equal_the_fold_over_each_group(
    client: TestClient, events: list[Any], groups: dict[str, set[str]]
) -> None:
    for metric in METRICS:
        body = exact(get(client, metric, group_by="group,provider", **TO))
        for code, members in groups.items():
            mine = [r for r in body["groups"] if r["student_group"] == code]
            want = REFERENCE[metric](ref.in_cohort(events, members), D, TZ, ("provider",))
            assert mine == [{**r, "student_group": code} for r in want], (metric, code)


def test_the_grouped_csv_holds_the_groups(client: TestClient, groups: Any) -> None:
    for metric in METRICS:
        body = get(client, metric, group_by="school,provider", **TO)
        r = client.get(f"/v1/metrics/{metric}", headers=auth("admin"),
                       params={"district_id": D, "group_by": "school,provider", "format": "csv",
                               **TO})  # fmt: skip
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert len(rows) == len(body["groups"])
        assert [(x["school_id"], x["provider"]) for x in rows] == [
            (g["school_id"], g["provider"]) for g in body["groups"]
        ]
        assert {x["as_of_position"] for x in rows} == {str(body["as_of_position"])}


@pytest.mark.parametrize("group_by", ["school,subject,provider", "provider,group,school",
                                      "provider,provider", "teacher,provider"])  # fmt: skip
def test_provider_with_two_other_dimensions_is_refused(
    client: TestClient, groups: Any, group_by: str
) -> None:
    for metric in ("participation", "dosage", "demand"):
        r = client.get(f"/v1/metrics/{metric}", headers=auth("admin"),
                       params={"district_id": D, "group_by": group_by})  # fmt: skip
        assert r.status_code == 422, (metric, group_by, r.text)


def _lines(rows: list[dict[str, Any]], keys: list[str]) -> list[list[int]]:
    """Row sets whose column sums another answer publishes: all rows, and with two additive
    dimensions each value's rows (roster groups overlap: a provider's rows across groups do
    not add up to anything; a group's rows across providers do)."""
    found = [list(range(len(rows)))]
    if len(keys) == 2:
        for key in keys:
            if key == "student_group" or "student_group" not in keys:
                by: dict[Any, list[int]] = defaultdict(list)
                for i, r in enumerate(rows):
                    by[r[key]].append(i)
                found.extend(by.values())
    return found


def _check(metric: str, shown: dict[str, Any], true: dict[str, Any]) -> int:
    """Nothing small shows; no line has one withheld cell unless its total is withheld or 0;
    no group shows a count whose margin minus it is small; derived figures go with their
    counts. Returns the withheld group counts."""
    keys = [COLUMNS[n] for n in true["group_by"]]
    rows, exact_rows = shown["groups"], true["groups"]
    withheld = 0
    for s, e in zip(rows + (shown.get("margins") or []),
                    exact_rows + (true.get("margins") or []), strict=True):  # fmt: skip
        for name in COUNTS[metric]:
            assert s[name] is None or (s[name] == e[name] and not 0 < s[name] < K), (name, s)
            withheld += s[name] is None
        for name, sources in DERIVED.items():
            if name in s and s[name] is not None:
                assert all(s[x] is not None for x in sources), (name, s)
        if any(s[n] is None for n in COUNTS[metric]):
            assert s["suppressed"] is True, s
    for name in COUNTS[metric]:
        for line in _lines(exact_rows, keys):
            hidden = sum(rows[i][name] is None for i in line)
            total = sum(exact_rows[i][name] for i in line)
            assert hidden != 1 or total == 0 or total < K, (name, [exact_rows[i] for i in line])
    margins = {(m["school_id"], m["subject"], m["provider"]): m for m in true.get("margins") or []}
    for s, e in zip(rows, exact_rows, strict=True):
        margin = margins.get((e["school_id"], e["subject"], e["provider"]))
        for name in COUNTS[metric] if margin else ():
            if 0 < margin[name] - e[name] < K:
                assert s[name] is None, (name, e, margin)
    return withheld


def test_a_dashboard_never_sees_a_group_cell_the_totals_give_back(
    client: TestClient, groups: dict[str, set[str]]
) -> None:
    withheld = 0
    for metric in METRICS:
        for group_by in GROUPINGS:
            shown = get(client, metric, key="dashboard", group_by=group_by)
            true = exact(get(client, metric, group_by=group_by, to=shown["filters"]["to"],
                             as_of_position=shown["as_of_position"]))  # fmt: skip
            assert shown["as_of_position"] == true["as_of_position"]
            withheld += _check(metric, shown, true)
            if any(r["suppressed"] for r in shown["groups"]):
                assert shown["suppressed"] is True
    assert withheld  # the foster group and the thin school × provider cells


def test_the_openapi_pattern_allows_exactly_what_the_routes_accept() -> None:
    """A value the OpenAPI pattern allows is accepted (the fuzzer's schema-valid requests),
    every order of the names included; duplicates and provider with two others are not."""
    names = list(COLUMNS)
    for size in range(1, 5):
        for chosen in itertools.product(names, repeat=size):
            text = ",".join(chosen)
            try:
                parse_group_by(text)
                accepted = True
            except InvalidRequest:
                accepted = False
            assert bool(re.fullmatch(GROUP_BY_PATTERN, text)) == accepted, text
            assert accepted == (len(set(chosen)) == size
                                and ("provider" not in chosen or size <= 2)), text  # fmt: skip
