"""Roster groups over HTTP on a real SQLite ledger and embedded chdb: every metric with
`group=` equals the independent reference over the group's sessions, equity gaps equal an
independent fold of the generated district and roster, dashboards never see a withheld cell
that the totals give back, the equity_gap alert, rebuild, and erasure.

chdb holds one data dir per process, so the module shares ONE app.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import reference_metrics as ref
import reference_standard as std
from builders import envelope, exact, write_keys
from fastapi.testclient import TestClient
from metric_events import TZ, district
from reference import participation as ref_participation

from tutorledger.api.app import create_app
from tutorledger.infra.importers.student_groups import import_groups
from tutorledger.infra.settings import Settings

D = "grp-gen"
DAY = date(2026, 9, 1)
KEYS = {
    "admin": "groups-admin-key-000000000",
    "dashboard": "groups-dashboard-key-00000",
}
UNSERVED = [f"roster-only-{i:03d}" for i in range(60)]  # rostered, never asked for help
# A standard the generated week can meet (one session of 20 minutes or more), so the equity
# gaps' dosage_standard measure counts some students and not others.
RULE = std.Rule(per_week=1, minutes=20, weeks=1)
PROFILE = {"time_zone": TZ, "dosage_standard": {"sessions_per_week": 1, "session_minutes": 20,
                                                "weeks": 1}}  # fmt: skip


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("groups")


@pytest.fixture(scope="module")
def client(app_dir: Path) -> Iterator[TestClient]:
    specs = [{"key": KEYS[r], "role": r, "districts": ["*"]} for r in KEYS]
    (app_dir / "districts.json").write_text(json.dumps({D: PROFILE}))
    settings = Settings(
        districts_file=app_dir / "districts.json",
        event_store=f"sqlite:///{app_dir}/l.db",
        clickhouse=f"chdb://{app_dir}/ch?database=groups",
        api_keys_file=write_keys(app_dir / "keys.json", specs),
        var_dir=app_dir / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def events(client: TestClient) -> list[dict[str, Any]]:
    accepted = []
    generated = district(D, students=160).events
    for i in range(0, len(generated), 1000):
        batch = generated[i : i + 1000]
        body = client.post("/v1/events", json={"events": batch}, headers=auth("admin")).json()
        accepted += [
            e for e, r in zip(batch, body["results"], strict=True) if r["status"] == "accepted"
        ]
    return accepted


def served(events: list[dict[str, Any]]) -> list[str]:
    return sorted({e["payload"]["student_id"] for e in events if e["type"] == "session.requested"})


def roster_groups(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The roster's groups: English learners mostly unserved (so they fall behind), a small
    foster group (withheld from dashboards), FRL and female spread over everyone."""
    users = served(events)
    everyone = users + UNSERVED
    return {
        "ell": set(UNSERVED[:40]) | set(users[:10]),
        "foster": set(users[10:14]),
        "econ_disadv": set(everyone[::2]),
        "female": set(everyone[1::2]),
        "male": set(everyone[::2]),
        "white": set(everyone) - set(users[20:22]),  # nearly everyone: the rest is small
    }


@pytest.fixture(scope="module")
def groups(
    client: TestClient, events: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, set[str]]:
    chosen = roster_groups(events)
    folder = tmp_path_factory.mktemp("roster")  # the district's file, not ours
    lines = ["sourcedId,status,role,givenName,grades,orgSourcedIds,metadata.ell,"
             "metadata.frl,metadata.foster"]  # fmt: skip
    sex = ["sourcedId,sex,birthDate,white"]
    for i, sid in enumerate(served(events) + UNSERVED):
        flags = [str(sid in chosen[c]).lower() for c in ("ell", "econ_disadv", "foster")]
        lines.append(",".join([sid, "active", "student", f"Name{i}", "05", "sch", *flags]))
        sex.append(
            f"{sid},{'female' if sid in chosen['female'] else 'male'},"
            f"2015-01-0{i % 9 + 1},{str(sid in chosen['white']).lower()}"
        )
    (folder / "users.csv").write_text("\n".join(lines) + "\n")
    (folder / "demographics.csv").write_text("\n".join(sex) + "\n")
    ledger = client.app.state.runtime.ledger  # type: ignore[attr-defined]
    done = import_groups(ledger, folder, D, DAY)
    assert done.groups["ell"] == len(chosen["ell"]) and done.students == len(served(events)) + 60
    ZIPS["roster"] = _zip(folder)
    return chosen


ZIPS: dict[str, bytes] = {}


def _zip(folder: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    return out.getvalue()


def test_the_admin_route_imports_the_same_roster_idempotently(
    client: TestClient, groups: dict[str, set[str]]
) -> None:
    url = f"/v1/admin/roster/{D}/groups?as_of={DAY.isoformat()}"
    zipped = {
        "content": ZIPS["roster"],
        "headers": {**auth("admin"), "Content-Type": "application/zip"},
    }
    again = client.post(url, **zipped)  # type: ignore[arg-type]
    assert again.status_code == 200, again.text
    assert set(again.json()["positions"].values()) == {None}
    assert again.json()["groups"]["ell"] == len(groups["ell"])
    denied = client.post(
        url,
        content=ZIPS["roster"],
        headers={**auth("dashboard"), "Content-Type": "application/zip"},
    )
    assert denied.status_code == 403
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("users.csv", "sourcedId,role,metadata.ell\nx1,student,perhaps\n")
    bad = client.post(url, content=broken.getvalue(), headers=zipped["headers"])
    assert bad.status_code == 422
    assert bad.json()["error"]["details"] == [
        {
            "file": "users.csv",
            "line": 2,
            "column": "metadata.ell",
            "problem": "flag must be true or false",
        }
    ]


def publish(client: TestClient) -> None:
    """Dashboards read published positions: the groups are theirs once another day's event
    follows them in the ledger (sending it twice stores it once)."""
    later = envelope(D, "after-groups", "requested", "2026-09-02T10:00:00-04:00",
                     {"school_id": "sch-01", "student_id": "stu-after-groups", "grade": 5,
                      "subject": "algebra"})  # fmt: skip
    posted = client.post("/v1/events", json={"events": [later]}, headers=auth("admin"))
    assert posted.status_code in (200, 201, 207), posted.text


def get(client: TestClient, path: str, key: str = "admin", **params: Any) -> Any:
    response = client.get(path, params={"district_id": D, **params}, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def fold(
    events: list[dict[str, Any]], members: set[str], school: str | None = None
) -> tuple[int, int, int]:
    """Independent fold: (members, reached: ≥ 1 request, regular: requests in ≥ 3 ISO weeks),
    counting only requests at `school` when one is given."""
    weeks: dict[str, set[tuple[int, int]]] = {}
    for e in events:
        if school is not None and e["payload"].get("school_id") != school:
            continue
        if e["type"] == "session.requested" and e["payload"]["student_id"] in members:
            local = datetime.fromisoformat(e["occurred_at"]).astimezone(ZoneInfo(TZ))
            weeks.setdefault(e["payload"]["student_id"], set()).add(local.isocalendar()[:2])
    return len(members), len(weeks), sum(len(w) >= 3 for w in weeks.values())


def met(events: list[dict[str, Any]], members: set[str], school: str | None = None) -> int:
    """Independent fold: the members who met RULE (tests/reference_standard.py), counting
    only sessions at `school` when one is given."""
    f = {"school_id": school} if school else {}
    done = [s for s in ref.select(events, D, TZ, **f) if std.length_us(s) is not None]
    counted = [w for w in std.judged(done, TZ, **f) if std.school_days(w, RULE)]
    plain = std.students(done, TZ, RULE, lambda s: [()]).get((), {})
    return sum(
        sid in members and std.status(st, counted, RULE) == "met" for sid, st in plain.items()
    )


def test_every_metric_with_a_group_equals_the_reference(
    client: TestClient, events: list[Any], groups: dict[str, set[str]]
) -> None:
    for code in ("ell", "econ_disadv"):
        members = groups[code]
        mine = ref.in_cohort(events, members)
        for metric, compute in (("wait-times", ref.wait_times), ("satisfaction", ref.satisfaction)):
            body = exact(get(client, f"/v1/metrics/{metric}", group=code, group_by="school"))
            assert body["rows"] == json.loads(
                json.dumps(compute(mine, D, TZ, ("school",)), default=str)
            )
        demand = exact(get(client, "/v1/metrics/demand", group=code))
        assert demand["rows"] == json.loads(
            json.dumps(ref.demand(mine, D, TZ, ("school", "subject")), default=str)
        )
        engagement = exact(get(client, "/v1/metrics/engagement", group=code))
        expected = json.loads(json.dumps(ref.engagement(mine, D, TZ), default=str))
        assert {k: engagement[k] for k in expected} == expected
        body = exact(get(client, "/v1/metrics/participation", group=code))
        reference = ref_participation(mine, [], D, TZ)
        assert body["students_served"] == reference["students_served"]
        assert body["sessions_requested"] == reference["sessions_requested"]
        assert body["cohort_size"] == len(members)
        assert body["filters"]["group"] == code


def test_equity_gaps_equal_an_independent_fold(
    client: TestClient, events: list[Any], groups: dict[str, set[str]]
) -> None:
    body = exact(get(client, "/v1/metrics/equity-gaps"))
    everyone = set(served(events)) | set(UNSERVED)
    assert body["students"] == len(everyone)
    rows = {(r["group"], r["measure"]): r for r in body["rows"]}
    assert {g for g, _ in rows} == set(groups)
    assert body["measures"] == ["reach", "regular_use", "dosage_standard"]
    for code, members in groups.items():
        n, reached, regular = fold(events, members)
        rest_n, rest_reached, rest_regular = fold(events, everyone - members)
        standard, rest_standard = met(events, members), met(events, everyone - members)
        for measure, x, rest_x in (("reach", reached, rest_reached),
                                   ("regular_use", regular, rest_regular),
                                   ("dosage_standard", standard, rest_standard)):  # fmt: skip
            row = rows[(code, measure)]
            assert (row["students"], row["count"]) == (n, x)
            assert (row["rest_students"], row["rest_count"]) == (rest_n, rest_x)
            assert row["difference"] == pytest.approx(x / n - rest_x / rest_n)
            assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    assert rows[("ell", "reach")]["difference"] < -0.3  # mostly unserved: far behind
    counts = {r["count"] for r in body["rows"] if r["measure"] == "dosage_standard"}
    assert len(counts) > 1 and max(counts) > 0  # the measure tells students apart
    school = sorted(
        {e["payload"]["school_id"] for e in events if e["type"] == "session.requested"}
    )[0]
    at_school = exact(get(client, "/v1/metrics/equity-gaps", school_id=school))
    for row in at_school["rows"]:
        n, reached, regular = fold(events, groups[row["group"]], school)
        rest_n, rest_reached, rest_regular = fold(events, everyone - groups[row["group"]], school)
        members = groups[row["group"]]
        x, rest_x = {
            "reach": (reached, rest_reached),
            "regular_use": (regular, rest_regular),
            "dosage_standard": (met(events, members, school), met(events, everyone - members,
                                                                    school)),
        }[row["measure"]]  # fmt: skip
        assert (row["students"], row["count"], row["rest_count"]) == (n, x, rest_x)
    csv = client.get("/v1/metrics/equity-gaps", params={"district_id": D, "format": "csv"},
                     headers=auth("admin"))  # fmt: skip
    assert csv.status_code == 200 and csv.text.count("\n") >= len(body["rows"])


def test_bad_group_filters(client: TestClient, groups: dict[str, set[str]]) -> None:
    params = {"district_id": D, "group": "martians"}
    bad = client.get("/v1/metrics/participation", params=params, headers=auth("admin"))
    assert bad.status_code == 422
    params["group"] = "gifted"  # a known code the roster had no column for
    missing = client.get("/v1/metrics/participation", params=params, headers=auth("admin"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_group"
    put = client.put(f"/v1/cohorts/{D}/roster.ell", json={"name": "x", "student_ids": ["a"]},
                     headers=auth("admin"))  # fmt: skip
    assert put.status_code == 409 and put.json()["error"]["code"] == "reserved_cohort_id"


def test_dashboards_never_get_a_withheld_cell_back(
    client: TestClient, events: list[Any], groups: dict[str, set[str]]
) -> None:
    publish(client)
    body = get(client, "/v1/metrics/equity-gaps", key="dashboard")
    exact_body = get(client, "/v1/metrics/equity-gaps", as_of_position=body["as_of_position"])
    assert body["students"] == exact_body["students"]
    foster = [r for r in body["rows"] if r["group"] == "foster"]
    assert foster and all(r["students"] is None and r["count"] is None for r in foster)
    for row in body["rows"]:
        # Each pair adds up to a total the dashboard sees: both shown or both withheld.
        assert (row["students"] is None) == (row["rest_students"] is None)
        assert (row["count"] is None) == (row["rest_count"] is None)
        if row["count"] is None:
            assert row["rate"] is None and row["difference"] is None and row["ci_low"] is None
        for name in ("students", "count", "rest_students", "rest_count"):
            assert row[name] is None or not 0 < row[name] < 10
    assert body["suppressed"]


def test_equity_gap_alert(client: TestClient, groups: dict[str, set[str]]) -> None:
    alerts = get(client, "/v1/alerts")["alerts"]
    gaps = [a for a in alerts if a["kind"] == "equity_gap"]
    assert {a["scope"]["group"] for a in gaps} >= {"ell"}
    assert all(a["figures"]["difference"] < -0.05 and a["figures"]["ci_high"] < 0 for a in gaps)
    assert all(a["figures"]["students"] >= 20 for a in gaps)  # foster (4) never raises one
    assert all(a["evidence"][0].startswith("/v1/metrics/equity-gaps?") for a in gaps)


def test_rebuild_and_erasure_keep_every_figure(
    client: TestClient, events: list[Any], groups: dict[str, set[str]], app_dir: Path
) -> None:
    def figures() -> list[Any]:
        got = [get(client, "/v1/metrics/equity-gaps"),
               get(client, "/v1/metrics/participation", group="ell"),
               get(client, "/v1/metrics/engagement", group="econ_disadv")]  # fmt: skip
        return [{k: v for k, v in b.items() if k not in ("as_of_position", "head_hash")}
                for b in got]  # fmt: skip

    before = figures()
    assert client.post("/v1/admin/rebuild", headers=auth("admin")).status_code == 200
    assert figures() == before
    student = sorted(groups["ell"] & set(served(events)))[0]
    response = client.post(
        f"/v1/privacy/students/{D}/{student}/erase",
        json={"reason": "parent_request"},
        headers={**auth("admin"), "X-Purpose": "unit test"},
    )
    assert response.status_code == 200, response.text
    assert figures() == before
    found = client.get(f"/v1/privacy/students/{D}/{student}",
                       headers={**auth("admin"), "X-Purpose": "unit test"})  # fmt: skip
    assert found.status_code in (404, 410) or not found.json().get("sessions")
    for path in app_dir.rglob("*"):
        if path.is_file():
            assert student.encode() not in path.read_bytes(), path


def _without_group(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "student_group"} for r in rows]


@pytest.mark.parametrize("metric", ["demand", "wait-times", "satisfaction"])
@pytest.mark.parametrize("split", ["group", "group,school"])
def test_group_by_group_equals_each_group_filter(
    client: TestClient, groups: dict[str, set[str]], metric: str, split: str
) -> None:
    rest = "school" if "school" in split else None
    body = exact(get(client, f"/v1/metrics/{metric}", group_by=split))
    assert body["group_by"] == split.split(",") or set(body["group_by"]) == set(split.split(","))
    for code in groups:
        mine = [r for r in body["rows"] if r["student_group"] == code]
        params = {"group": code, **({"group_by": rest} if rest else {})}
        if metric == "demand" and not rest:
            params["group_by"] = ""
        alone = exact(get(client, f"/v1/metrics/{metric}", **{k: v for k, v in params.items()
                                                              if v != ""}))  # fmt: skip
        if metric == "demand":  # share/lift are the scope's, not the group's: compare counts
            keep = ("school_id", "requests", "completed", "students")
            mine = [{k: r[k] for k in keep} for r in mine]
            alone["rows"] = [{k: r[k] for k in keep} for r in alone["rows"]
                             if rest or r["subject"] is None]  # fmt: skip
            if not rest:
                continue  # demand's default is school,subject; its total row is checked below
        assert _without_group(mine) == _without_group(alone["rows"]), code
    plain = exact(get(client, f"/v1/metrics/{metric}", **({"group_by": rest} if rest else {})))
    if metric != "demand" or rest:
        assert body["margins"] == plain["rows"]


def test_group_rows_keep_the_rest_of_the_district_large(
    client: TestClient, groups: dict[str, set[str]]
) -> None:
    """A margin minus a group's count is the rest of the district: never 1 … k − 1 shown."""
    publish(client)
    for metric in ("wait-times", "satisfaction"):
        body = get(client, f"/v1/metrics/{metric}", key="dashboard", group_by="group")
        exact_body = get(client, f"/v1/metrics/{metric}", group_by="group",
                         as_of_position=body["as_of_position"])  # fmt: skip
        margin = exact_body["margins"][0]
        by_rest = 0
        for shown, true in zip(body["rows"], exact_body["rows"], strict=True):
            for name, value in true.items():
                if isinstance(value, int) and not isinstance(value, bool) and name in margin:
                    rest = margin[name] - value
                    if 0 < rest < 10 or 0 < value < 10:
                        assert shown[name] is None, (metric, true["student_group"], name)
                        by_rest += value >= 10
        assert by_rest  # the 'white' group's counts: large, withheld for the rest's sake
        assert any(r["student_group"] == "foster" and r["suppressed"] for r in body["rows"])


def test_students_who_need_it_most_page(client: TestClient, groups: dict[str, set[str]]) -> None:
    """The groups page shows each group's gaps as the API gives them to the same key:
    withheld cells marked, never a figure the API withholds."""
    publish(client)
    client.cookies.clear()
    signed = client.post("/signin", data={"key": KEYS["dashboard"]}, follow_redirects=False)
    assert signed.status_code == 303, signed.text
    page = client.get(f"/dashboard/{D}/groups")
    assert page.status_code == 200, page.text
    api = get(client, "/v1/metrics/equity-gaps", key="dashboard")
    html = page.text
    assert 'id="tbl-groups"' in html
    # The third measure is named and defined with this district's standard (PROFILE).
    assert "Reach, regular use and the dosage standard by roster group" in html
    assert "at least 1 completed sessions of 20 minutes or more in each of 1 school weeks" in html
    for row in api["rows"]:
        assert f'data-key="{row["group"]}"' in html
        cell = f'data-col="{row["measure"]}_gap" data-value="{row["difference"]}"'
        if row["difference"] is None:
            assert f'data-col="{row["measure"]}_gap" data-value="" data-withheld="1"' in html
        else:
            assert cell in html, cell
    foster = html.split('data-key="foster"')[1].split("</tr>")[0]
    assert 'data-withheld="1"' in foster and 'data-col="students" data-value=""' in foster
    district = client.get(f"/dashboard/{D}")
    assert f'href="/dashboard/{D}/groups' in district.text
    card = district.text.split('data-kind="equity_gap"')[1].split("</li>")[0]
    assert "Behind: English learners" in card and f'href="/dashboard/{D}/groups?' in card
    client.cookies.clear()
