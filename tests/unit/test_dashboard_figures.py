"""The district page's grouped figures, in process (real SQLite ledger and chdb).

Two demo districts of different sizes are loaded through the API. A page render must make
the same number of ClickHouse queries whatever the number of schools and weeks (counted by
wrapping the store, never timed), and every row of the grouped tables must equal the API's
answer for that row's narrower filter, for a dashboard key (small cells withheld) as for an
auditor key.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import envelope, post_all, write_keys
from fastapi.testclient import TestClient

from tutorledger.api.app import create_app
from tutorledger.api.dashboard.session import COOKIE
from tutorledger.bench.district import DistrictSpec, generate
from tutorledger.infra.settings import Settings

ADMIN = "figures-admin-key-00000000"
DASH = "figures-dashboard-key-0000"
AUDIT = "figures-auditor-key-000000"
SMALL, LARGE = "fig-small", "fig-large"  # 2 schools × 3 weeks, 6 schools × 9 weeks
PROV = "fig-prov"  # two sessions, one per provider, in different cells
PROVIDERS = {"figures-emitter-a-key-00000": "tutors-a", "figures-emitter-b-key-00000": "tutors-b"}
START = date(2026, 9, 7)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("figures")
    keys = write_keys(
        tmp / "keys.json",
        [
            {"key": ADMIN, "role": "admin", "districts": ["*"]},
            {"key": DASH, "role": "dashboard", "districts": [SMALL, LARGE]},
            {"key": AUDIT, "role": "auditor", "districts": [SMALL, LARGE, PROV]},
            *(
                {"key": k, "role": "emitter", "districts": [PROV], "provider": p}
                for k, p in PROVIDERS.items()
            ),
        ],
    )
    settings = Settings(
        event_store=f"sqlite:///{tmp}/l.db",
        clickhouse=f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}",
        api_keys_file=keys,
        var_dir=tmp / "var",
        session_secret="figures-secret",
    )
    with TestClient(create_app(settings), base_url="http://figures.test") as c:
        for district, schools, days in ((SMALL, 2, 21), (LARGE, 6, 63)):
            load(c, DistrictSpec(district_id=district, schools=schools, students=40 * schools,
                                 days=days, start=START))  # fmt: skip
        members = [f"stu-{n:06d}" for n in range(1, 240, 7)]
        put = c.put(f"/v1/cohorts/{LARGE}/sevens", headers=auth(ADMIN),
                    json={"name": "Every seventh", "student_ids": members})  # fmt: skip
        assert put.status_code == 200, put.text
        # Dashboards read published positions (docs/privacy.md): one request of a later
        # local day publishes everything before it, the cohort included.
        when = f"{START + timedelta(days=70)}T10:00:00-04:00"
        later = envelope(LARGE, "fig-later", "requested", when,
                         {"school_id": "sch-01", "student_id": "stu-later", "grade": 5,
                          "subject": "algebra"})  # fmt: skip
        assert c.post("/v1/events", json={"events": [later]}, headers=auth(ADMIN)).status_code < 300
        for (key, _), (school, subject) in zip(
            PROVIDERS.items(), (("sch-01", "algebra"), ("sch-02", "geometry")), strict=True
        ):
            event = envelope(PROV, f"prov-{school}", "requested", f"{START}T10:00:00-04:00",
                             {"school_id": school, "student_id": f"stu-{school}", "grade": 5,
                              "subject": subject})  # fmt: skip
            assert c.post("/v1/events", json={"events": [event]}, headers=auth(key)).is_success
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def load(client: TestClient, spec: DistrictSpec) -> None:
    district = generate(spec)
    for school in district.schools:
        body = {"name": school["name"], "enrollment": school["enrollment"],
                "as_of": school["as_of"].isoformat()}  # fmt: skip
        response = client.put(f"/v1/schools/{spec.district_id}/{school['school_id']}",
                              json=body, headers=auth(ADMIN))  # fmt: skip
        assert response.status_code == 200, response.text
    post_all(client, district.events, auth(ADMIN))


def signed_in(client: TestClient, key: str) -> TestClient:
    client.cookies.clear()
    response = client.post("/signin", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303 and COOKIE in response.cookies
    return client


def counted(client: TestClient, path: str) -> int:
    """ClickHouse queries one page render makes (the store's query method, wrapped)."""
    store = client.app.state.runtime.projections  # type: ignore[attr-defined]
    calls: list[str] = []
    original: Callable[..., Any] = store.execute

    def execute(sql: str, params: Any = None) -> Any:
        calls.append(sql)
        return original(sql, params)

    store.execute = execute
    try:
        response = client.get(path)
    finally:
        del store.execute
    assert response.status_code == 200, response.text
    return len(calls)


@pytest.mark.parametrize(
    "query",
    ["", "?from=2026-09-14", "?grade=4&to=2026-09-20", "?school_id=sch-01&subject=algebra"],
)
def test_a_page_makes_as_many_queries_for_6_schools_x_9_weeks_as_for_2_x_3(
    client: TestClient, query: str
) -> None:
    signed_in(client, DASH)
    client.get(f"/dashboard/{SMALL}")  # warm: the first render syncs the projector
    client.get(f"/dashboard/{LARGE}")
    small = counted(client, f"/dashboard/{SMALL}{query}")
    large = counted(client, f"/dashboard/{LARGE}{query}")
    assert small == large, (small, large)
    drill = "?school_id=sch-02&subject=algebra"
    assert counted(client, f"/dashboard/{SMALL}/drill{drill}") == counted(
        client, f"/dashboard/{LARGE}/drill{drill}"
    )


def table(client: TestClient, name: str, params: dict[str, Any]) -> list[dict[str, str]]:
    response = client.get(f"/dashboard/{LARGE}/csv/{name}", params=params)
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def api(client: TestClient, key: str, metric: str, params: dict[str, Any]) -> dict[str, Any]:
    response = client.get(f"/v1/metrics/{metric}", params={"district_id": LARGE, **params},
                          headers=auth(key))  # fmt: skip
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def same(row: dict[str, str], answer: dict[str, Any], fields: tuple[str, ...]) -> None:
    """A CSV cell equals the API's figure (empty = null, withheld or missing)."""
    for name in fields:
        expected = answer[name]
        cell = row[name]
        if expected is None:
            assert cell == "", (name, row, answer)
        else:
            assert float(cell) == pytest.approx(float(expected), rel=0, abs=0), (name, row)


REACH = ("enrolled", "students_served", "reach_rate", "sessions_requested", "sessions_completed")
VIEWS = [
    {},
    {"grade": 3},
    {"subject": "algebra", "from": "2026-09-21", "to": "2026-10-25"},
    {"cohort_id": "sevens"},
    {"cohort_id": "sevens", "grade": 5, "from": "2026-10-01"},
]


@pytest.mark.parametrize("key", [DASH, AUDIT])
@pytest.mark.parametrize("view", VIEWS)
def test_grouped_tables_equal_the_api_row_by_row(
    client: TestClient, key: str, view: dict[str, Any]
) -> None:
    signed_in(client, key)
    position = int(table(client, "participation", view)[0]["as_of_position"])
    at = {**view, "as_of_position": position}
    schools = table(client, "reach-by-school", at)
    assert schools and {r["as_of_position"] for r in schools} == {str(position)}
    withheld = 0
    for row in schools:
        answer = api(client, key, "participation", {**at, "school_id": row["school_id"]})
        same(row, answer, REACH + (("cohort_size",) if "cohort_id" in view else ()))
        withheld += sum(answer[name] is None for name in REACH[:2])
    rates = [float(r["sessions_per_student"]) for r in schools if r["rank"]]
    assert rates == sorted(rates), "schools are ranked by use per student, lowest first"
    for row in table(client, "reach-trend", at):
        same(row, api(client, key, "participation", {**at, "to": row["through"]}),
             ("enrolled", "students_served", "reach_rate"))  # fmt: skip
    months = table(client, "use-by-month", at)
    assert months
    for row in months:
        limits = {"from": row["from_date"], "to": row["to_date"]}
        same(row, api(client, key, "participation", {**at, **limits}), REACH)
    if key == DASH and view.get("grade") is not None:
        assert withheld, "a view this small must withhold some school's figures"


def test_the_previous_period_has_the_view_s_length(client: TestClient) -> None:
    signed_in(client, DASH)
    view = {"from": "2026-10-05", "to": "2026-10-18"}
    (row,) = [r for r in table(client, "headline", view) if r["metric"].startswith("partic")][:1]
    assert (row["period_from"], row["period_to"]) == ("2026-10-05", "2026-10-18")
    assert (row["previous_from"], row["previous_to"]) == ("2026-09-21", "2026-10-04")
    before = api(client, DASH, "participation", {"from": "2026-09-21", "to": "2026-10-04"})
    now = api(client, DASH, "participation", view)
    assert float(row["value"]) == now["students_served"]
    assert float(row["previous"]) == before["students_served"]
    assert float(row["change"]) == now["students_served"] - before["students_served"]


@pytest.mark.parametrize("key", [DASH, AUDIT])
def test_drill_grades_equal_the_demand_answer_at_each_grade(client: TestClient, key: str) -> None:
    signed_in(client, key)
    view = {"school_id": "sch-03", "subject": "geometry", "from": "2026-09-14"}
    rows = table(client, "drill-grades", view)
    assert [int(r["grade"]) for r in rows] == list(range(13))
    at = {**view, "as_of_position": int(rows[0]["as_of_position"])}
    for row in rows:
        found = api(client, key, "demand", {**at, "grade": row["grade"]})["rows"]
        expected = found[0] if found else dict.fromkeys(("requests", "lift"))
        same(row, expected, ("requests", "completed", "students", "share", "lift") if found
             else ("requests", "lift"))  # fmt: skip


def test_week_and_month_rows_cover_the_view(client: TestClient) -> None:
    signed_in(client, AUDIT)
    weeks = table(client, "reach-trend", {"from": "2026-09-09", "to": "2026-10-06"})
    assert weeks[0]["week_start"] == "2026-09-07" and weeks[-1]["through"] == "2026-10-06"
    ends = [date.fromisoformat(r["through"]) for r in weeks]
    assert all(b - a == timedelta(days=7) for a, b in zip(ends, ends[1:-1], strict=False))
    months = table(client, "use-by-month", {"from": "2026-09-20", "to": "2026-10-10"})
    spans = [(r["period"], r["from_date"], r["to_date"]) for r in months]
    assert spans == [
        # A month is the weeks that start in it: September's run from Monday 7 September
        # to Sunday 4 October; August's end on Sunday 6 September.
        ("previous", "2026-08-30", "2026-09-06"),
        ("previous", "2026-09-07", "2026-09-19"),
        ("current", "2026-09-20", "2026-10-04"),
        ("current", "2026-10-05", "2026-10-10"),
    ]


def page(client: TestClient, path: str, params: dict[str, Any]) -> str:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.text


def test_widened_dates_are_explained_with_what_was_asked(client: TestClient) -> None:
    signed_in(client, DASH)
    asked = {"from": "2026-09-16", "to": "2026-09-30"}  # a Wednesday to a Wednesday
    text = page(client, f"/dashboard/{LARGE}", asked)
    assert "<strong>2026-09-14</strong> to <strong>2027-10-04</strong>" not in text
    assert "<strong>2026-09-14</strong> to <strong>2026-10-04</strong>" in text
    assert 'id="widened"' in text and "you asked 2026-09-16 – 2026-09-30" in text
    assert "you asked from 2026-09-16." in page(
        client, f"/dashboard/{LARGE}", {"from": "2026-09-16"}
    )
    for path in ("drill", "groups"):
        more = {"school_id": "sch-01", "subject": "algebra"} if path == "drill" else {}
        assert "you asked 2026-09-16 – 2026-09-30" in page(
            client, f"/dashboard/{LARGE}/{path}", {**asked, **more}
        )
    # Whole weeks already, or no dates, or an auditor's exact range: nothing was widened.
    assert 'id="widened"' not in page(
        client, f"/dashboard/{LARGE}", {"from": "2026-09-14", "to": "2026-09-27"}
    )
    assert 'id="widened"' not in page(client, f"/dashboard/{LARGE}", {})
    signed_in(client, AUDIT)
    text = page(client, f"/dashboard/{LARGE}", asked)
    assert 'id="widened"' not in text and "<strong>2026-09-16</strong>" in text


def test_a_previous_period_before_the_first_request_is_said_to_be_shorter(
    client: TestClient,
) -> None:
    signed_in(client, AUDIT)
    first = api(client, AUDIT, "engagement", {})["rows"][0]["week_start"]
    assert first == "2026-09-07"  # the generator's first day is a Monday with requests
    # 21 days from 14 September: the previous period is 24 August to 13 September.
    text = page(client, f"/dashboard/{LARGE}", {"from": "2026-09-14", "to": "2026-10-04"})
    assert 'id="previous-partial"' in text
    assert "first request (2026-09-07): only 7 of its 21 days could hold requests" in text
    assert "+" in text.split('id="tile-reached"')[1].split("</li>")[0]  # figures still compared
    # Wholly before it: nothing to compare with, and said so.
    text = page(client, f"/dashboard/{LARGE}", {"from": "2026-09-07", "to": "2026-09-13"})
    assert "ends before the district's first request (2026-09-07)" in text
    # Starting on the first request: an equal span, no note.
    text = page(client, f"/dashboard/{LARGE}", {"from": "2026-09-21", "to": "2026-10-04"})
    assert 'id="previous-partial"' not in text


@pytest.mark.parametrize("key", [DASH, AUDIT])
def test_the_drill_page_shows_surveys_and_why_its_helped_rate_is_withheld(
    client: TestClient, key: str
) -> None:
    signed_in(client, key)
    reasons = 0
    for grade in range(13):
        view = {"school_id": "sch-03", "subject": "geometry", "grade": grade}
        text = page(client, f"/dashboard/{LARGE}/drill", view)
        position = re.search(r'id="as-of-position" data-value="(\d+)"', text)
        assert position is not None
        at = {**view, "as_of_position": int(position[1])}
        rows = api(client, key, "satisfaction", at)["rows"]
        row = rows[0] if rows else {"surveys": None, "helped_rate": None}
        cell = text.split('data-col="surveys"')[1].split("</td>")[0]
        if (
            row["surveys"] is None
            and row.get("helped_rate") is None
            and key == DASH
            and ('data-withheld="1"' in cell)
        ):
            reasons += 1
            assert "Helped rate withheld: the number of surveys it is computed from is withheld" \
                   " (fewer than 10" in text  # fmt: skip
        elif row["surveys"] is not None:
            assert f'data-value="{row["surveys"]}"' in cell
            assert ('id="helped-withheld"' in text) == (
                row["helped_rate"] is None and row["surveys"] > 0
            )
    assert reasons or key == AUDIT, "grade cells this small must withhold some survey count"


def test_the_drill_page_has_the_district_s_provider_picker(client: TestClient) -> None:
    signed_in(client, AUDIT)
    cell = {"school_id": "sch-01", "subject": "algebra"}
    text = page(client, f"/dashboard/{PROV}/drill", cell)
    # Only tutors-a served this cell; the picker offers the district's providers, as the
    # district page does.
    assert 'id="f-provider"' in text
    assert all(f'<option value="{p}" >{p}</option>' in text for p in PROVIDERS.values())
    requests = {
        p: page(client, f"/dashboard/{PROV}/drill", {**cell, "provider": p})
        .split('data-col="requests"')[1]
        .split(">")[0]
        for p in PROVIDERS.values()
    }
    assert requests == {"tutors-a": ' data-value="1"', "tutors-b": ' data-value=""'}
