"""`dosage-standard` grouped by roster group and by provider, over HTTP on SQLite and chdb.

Each row grouped by roster group (`student_group`) or provider equals the metric asked with
that value as a filter (`group=`, `provider=`, with the other dimension's filter too), `margins`
equal the rows without the group split, a dashboard key sees no small cell and no group whose
margin minus it is small, and the OpenAPI pattern allows exactly what the route accepts.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from builders import envelope, write_keys
from fastapi.testclient import TestClient

from tutorledger.api.app import create_app
from tutorledger.api.metrics.standard import parse_standard_group_by
from tutorledger.domain.errors import InvalidRequest
from tutorledger.infra.importers.student_groups import import_groups
from tutorledger.infra.settings import Settings
from tutorledger.projections.dosage_standard import STANDARD_GROUPS

D = "stdg-unit"
TZ = "America/New_York"
K = 10
PROVIDERS = ("vendor-a", "inhouse", "")  # '': posted by an emitter key without a provider
KEYS = {
    "admin": "stdg-admin-key-000000000000",
    "dashboard": "stdg-dashboard-key-00000000",
    "vendor-a": "stdg-emitter-vendor-a-00000",
    "inhouse": "stdg-emitter-inhouse-000000",
    "": "stdg-emitter-plain-00000000",
}
PROFILE = {
    "time_zone": TZ,
    "suppression_threshold": K,
    "dosage_standard": {"sessions_per_week": 2, "session_minutes": 30, "weeks": 3},
}
FIRST_MONDAY = date(2026, 10, 12)
STUDENTS = 40
STATUSES = ("students", "met", "on_track", "short")
FILTER_OF = {"school_id": "school_id", "subject": "subject", "grade": "grade",
             "student_group": "group", "provider": "provider"}  # fmt: skip
# Roster groups: overlapping, one of them small (foster: 3 students), one all but five (the
# rest of the district is small), none of them everyone.
GROUPS = {
    "ell": {s for s in range(STUDENTS) if s % 2 == 0},
    "econ_disadv": {s for s in range(STUDENTS) if s % 8 != 0},
    "foster": {1, 2, 5},
}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def student(s: int) -> str:
    return f"stdg-stu-{s}"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("standard-groups")
    specs: list[dict[str, Any]] = [
        {"key": KEYS["admin"], "role": "admin", "districts": ["*"]},
        {"key": KEYS["dashboard"], "role": "dashboard", "districts": [D]},
    ]
    for provider in PROVIDERS:
        spec = {"key": KEYS[provider], "role": "emitter", "districts": [D]}
        specs.append({**spec, "provider": provider} if provider else spec)
    (tmp / "districts.json").write_text(json.dumps({D: PROFILE}))
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=stdg_unit",
        api_keys_file=write_keys(tmp / "keys.json", specs),
        districts_file=tmp / "districts.json",
        var_dir=tmp / "var",
    )
    with TestClient(create_app(settings)) as c:
        load(c, tmp)
        yield c


def session(n: int, s: int, day: int) -> list[dict[str, Any]]:
    """Student `s`'s session on day `day` after FIRST_MONDAY, 16:00 local, 31 or 25 minutes."""
    when = FIRST_MONDAY + timedelta(days=day)
    begin = datetime(when.year, when.month, when.day, 16, 0, tzinfo=ZoneInfo(TZ))
    end = begin + timedelta(minutes=31 if (n + s) % 5 else 25)
    payload = {"school_id": f"sch-{s % 2}", "student_id": student(s), "grade": 6 + s % 3,
               "subject": "algebra" if s % 4 else "reading"}  # fmt: skip
    sid = f"stdg-s{n}"
    return [
        envelope(D, sid, "requested", begin.isoformat(), payload),
        envelope(D, sid, "matched", begin.isoformat(), {"tutor_id": "t1"}),
        envelope(D, sid, "completed", end.isoformat(), {"outcome": "resolved"}),
    ]


def load(client: TestClient, tmp: Path) -> None:
    """Sessions of every student (more often for some), each posted by its provider's key (a
    student's sessions spread over providers); then the roster groups as a OneRoster file."""
    by_provider: dict[str, list[dict[str, Any]]] = {p: [] for p in PROVIDERS}
    n = 0
    for s in range(STUDENTS):
        for day in range(0, 28, 1 + s % 4):
            by_provider[PROVIDERS[(s + day) % 3]] += session(n, s, day)
            n += 1
    for provider, events in by_provider.items():
        r = client.post("/v1/events", json={"events": events}, headers=auth(provider))
        assert r.status_code == 200, r.text
        assert {x["status"] for x in r.json()["results"]} == {"accepted"}, r.text
    lines = ["sourcedId,status,role,givenName,grades,orgSourcedIds,metadata.ell,"
             "metadata.frl,metadata.foster"]  # fmt: skip
    for s in range(STUDENTS):
        flags = [str(s in GROUPS[g]).lower() for g in ("ell", "econ_disadv", "foster")]
        lines.append(",".join([student(s), "active", "student", f"N{s}", "06", "sch", *flags]))
    (tmp / "users.csv").write_text("\n".join(lines) + "\n")
    ledger = client.app.state.runtime.ledger  # type: ignore[attr-defined]
    import_groups(ledger, tmp, D, date(2026, 10, 1))
    # A later event, so a dashboard key (published positions) sees the groups.
    later = envelope(D, "stdg-after", "requested", "2026-12-20T10:00:00-05:00",
                     {"school_id": "sch-0", "student_id": student(0), "grade": 6,
                      "subject": "algebra"})  # fmt: skip
    r = client.post("/v1/events", json={"events": [later]}, headers=auth("admin"))
    assert r.status_code == 200, r.text


TO = {"from": "2026-10-12", "to": "2026-11-08"}


def get(client: TestClient, key: str = "admin", **params: Any) -> dict[str, Any]:
    r = client.get("/v1/metrics/dosage-standard", params={"district_id": D, **TO, **params},
                   headers=auth(key))  # fmt: skip
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def counts(row: dict[str, Any]) -> list[Any]:
    return [row[k] for k in STATUSES]


@pytest.mark.parametrize(
    "group_by", ["group", "provider", "group,provider", "school,group", "grade,provider"]
)
def test_each_row_equals_the_metric_filtered_to_its_values(
    client: TestClient, group_by: str
) -> None:
    body = get(client, group_by=group_by)
    columns = [STANDARD_GROUPS[n] for n in group_by.split(",")]
    rows = body["rows"]
    if "student_group" in columns:
        assert {r["student_group"] for r in rows} == set(GROUPS)  # never roster.all
    if "provider" in columns:
        assert {r["provider"] for r in rows} == set(PROVIDERS)
    checked = 0
    for row in rows:
        if row.get("provider") == "":
            continue  # '' (no provider) cannot be asked as a filter
        only = get(client, **{FILTER_OF[c]: row[c] for c in columns})["rows"]
        assert [counts(r) for r in only] == [counts(row)], row
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("group_by", ["group", "group,provider", "school,group"])
def test_margins_are_the_rows_without_the_group_split(client: TestClient, group_by: str) -> None:
    body = get(client, group_by=group_by)
    rest = ",".join(n for n in group_by.split(",") if n != "group")
    plain = get(client, **({"group_by": rest} if rest else {}))
    assert body["margins"] == plain["rows"]
    assert "margins" not in plain or plain["margins"] is None
    # A student in several groups counts in each: the groups' students add up to more.
    total = sum(m["students"] for m in body["margins"])
    assert sum(r["students"] for r in body["rows"]) > total


@pytest.mark.parametrize("group_by", ["group", "group,provider", "school,group", "provider"])
def test_a_dashboard_never_sees_a_group_cell_the_margin_gives_back(
    client: TestClient, group_by: str
) -> None:
    shown = get(client, "dashboard", group_by=group_by)
    true = get(client, group_by=group_by, as_of_position=shown["as_of_position"])
    assert len(shown["rows"]) == len(true["rows"])
    withheld = 0
    for s, t in zip(shown["rows"] + (shown.get("margins") or []),
                    true["rows"] + (true.get("margins") or []), strict=True):  # fmt: skip
        assert all(v is None or not 0 < v < K for v in counts(s)), s
        assert sum(v is None for v in counts(s)) != 1, s  # students = met + on_track + short
        assert all(v is None or v == t[k] for k, v in s.items() if k != "suppressed")
        withheld += sum(v is None for v in counts(s))
    others = [c for c in STANDARD_GROUPS.values() if c != "student_group"]
    margins = {tuple(m[c] for c in others): m for m in shown.get("margins") or []}
    exact = {tuple(m[c] for c in others): m for m in true.get("margins") or []}
    risky = 0
    for s, t in zip(shown["rows"], true["rows"], strict=True):
        key = tuple(s[c] for c in others)
        if key not in margins:
            continue
        for name in STATUSES:
            rest = exact[key][name] - t[name]
            if 0 < rest < K:  # the rest is small: the part (or the margin) is withheld
                assert s[name] is None or margins[key][name] is None, (s, name)
                risky += 1
    if group_by == "group":
        assert withheld and risky  # foster (3 students); econ_disadv (all but 5)


def test_the_openapi_pattern_allows_exactly_what_the_route_accepts(client: TestClient) -> None:
    """A value the OpenAPI pattern allows is accepted, every order included; duplicates,
    three names and a cohort with a roster group are not (and are refused with a 422)."""
    spec = client.get("/openapi.json").json()
    params = spec["paths"]["/v1/metrics/dosage-standard"]["get"]["parameters"]
    schema = next(p["schema"] for p in params if p["name"] == "group_by")
    pattern = next(s["pattern"] for s in schema["anyOf"] if "pattern" in s)
    names = list(STANDARD_GROUPS)
    for size in range(1, 4):
        for chosen in itertools.product(names, repeat=size):
            text = ",".join(chosen)
            try:
                parse_standard_group_by(text)
                accepted = True
            except InvalidRequest:
                accepted = False
            assert bool(re.fullmatch(pattern, text)) == accepted, text
            expected = len(set(chosen)) == size <= 2 and set(chosen) != {"cohort", "group"}
            assert accepted == expected, text
    r = client.get("/v1/metrics/dosage-standard",
                   params={"district_id": D, "group_by": "group,cohort"},
                   headers=auth("admin"))  # fmt: skip
    assert r.status_code == 422
