"""The high-dosage standard over HTTP on a real SQLite ledger and embedded chdb.

The `dosage-standard` metric equals the independent fold (tests/reference_standard.py) on
generated session sets that hit the rule's edges: a session of exactly 30 minutes (and one a
microsecond short), one requested before local midnight and completed after it, weeks
across the autumn DST change, a week whose school days are all a break, weeks with no
session. The student list of those falling short and the Ed-Fi export are personal-data
reads: roles, purpose and the disclosure log are checked, and the export's resources are
checked against the Ed-Fi v5 resource shapes and are byte-identical when exported twice.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import reference_standard as fold
from builders import envelope, write_keys
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tutorledger.api.app import create_app
from tutorledger.domain.district import parse_profiles
from tutorledger.domain.dosage_standard import DosageStandard, Status, judge
from tutorledger.infra.settings import Settings

TZ = "America/New_York"
KEYS = {
    "admin": "standard-admin-key-00000000",
    "auditor": "standard-auditor-key-000000",
    "dashboard": "standard-dashboard-key-0000",
}
# A small standard so every status shows up in four or five weeks; the week of Monday
# 2026-10-26 is a break (no school day), and DST ends on Sunday 2026-11-01.
BREAK = (date(2026, 10, 26), date(2026, 10, 30))
RULE = fold.Rule(per_week=2, minutes=30, weeks=3, breaks=(BREAK,))
PROFILE = {
    "time_zone": TZ,
    "dosage_standard": {"sessions_per_week": 2, "session_minutes": 30, "weeks": 3,
                        "breaks": [{"start": "2026-10-26", "end": "2026-10-30"}]},
    "edfi": {"education_organization_id": 255901},
}  # fmt: skip
DISTRICTS = [f"std-{i}" for i in range(500)]
FIRST_MONDAY = date(2026, 10, 12)
EDFI_ORG = 255901
_fresh = itertools.count()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("standard")
    write_keys(
        tmp / "keys.json",
        [{"key": k, "role": role, "districts": ["*"]} for role, k in KEYS.items()],
    )
    (tmp / "districts.json").write_text(json.dumps(dict.fromkeys(DISTRICTS, PROFILE)))
    return tmp


def app_settings(home: Path, clickhouse: str) -> Settings:
    return Settings(
        event_store=f"sqlite:///{home}/l.db",
        clickhouse=clickhouse,
        api_keys_file=home / "keys.json",
        districts_file=home / "districts.json",
        var_dir=home / "var",
    )


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    settings_ = app_settings(home, f"chdb://{home}/ch?database=standard")
    with TestClient(create_app(settings_)) as c:
        yield c


def auth(role: str, purpose: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {KEYS[role]}"}
    return headers | ({"X-Purpose": purpose} if purpose else {})


# -- generated sessions -----------------------------------------------------------------------

# (day offset from FIRST_MONDAY, local start hh:mm, length in µs, student, school, grade)
Plan = tuple[int, str, int, int, int, int]
LENGTHS = st.sampled_from(
    [30 * 60_000_000, 30 * 60_000_000 - 1, 29 * 60_000_000, 45 * 60_000_000, 31 * 60_000_000]
)
STARTS = st.sampled_from(["16:00", "23:50", "01:30", "00:10", "12:00"])
SESSION = st.tuples(
    st.integers(0, 34), STARTS, LENGTHS, st.integers(0, 5), st.integers(0, 1), st.integers(6, 7)
)


def session_events(d: str, n: int, plan: Plan) -> list[dict[str, Any]]:
    """One session requested, matched at once and completed `length` µs later; local times
    in the district's zone (01:30 on 2026-11-01 is the first, daylight-time one)."""
    offset, start, length, student, school, grade = plan
    hh, mm = (int(p) for p in start.split(":"))
    day = FIRST_MONDAY + timedelta(days=offset)
    begin = datetime(day.year, day.month, day.day, hh, mm, tzinfo=ZoneInfo(TZ))
    end = begin + timedelta(microseconds=length)
    sid = f"{d}-s{n}"
    payload = {"school_id": f"sch-{school}", "student_id": f"{d}-stu-{student}",
               "grade": grade, "subject": "algebra"}  # fmt: skip
    return [
        envelope(d, sid, "requested", begin.isoformat(), payload),
        envelope(d, sid, "matched", begin.isoformat(), {"tutor_id": "t1"}),
        envelope(d, sid, "completed", end.isoformat(), {"outcome": "resolved"}),
    ]


def load(client: TestClient, d: str, plans: list[Plan]) -> list[dict[str, Any]]:
    events = [e for n, p in enumerate(plans) for e in session_events(d, n, p)]
    response = client.post("/v1/events", json={"events": events}, headers=auth("admin"))
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} <= {"accepted"}
    return events


def metric(client: TestClient, d: str, role: str = "auditor", **params: Any) -> dict[str, Any]:
    response = client.get(
        "/v1/metrics/dosage-standard", params={"district_id": d, **params}, headers=auth(role)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the `suppressed` flag (always false for an auditor)."""
    assert not any(r.pop("suppressed") for r in rows)
    return rows


def fresh() -> str:
    return DISTRICTS[next(_fresh)]


# Sessions every generated set gets: the rule's edges, always present.
EDGES: list[Plan] = [
    (0, "16:00", 30 * 60_000_000, 0, 0, 6),  # exactly 30 minutes: counts
    (1, "16:00", 30 * 60_000_000 - 1, 0, 0, 6),  # a microsecond short: does not
    (6, "23:50", 45 * 60_000_000, 1, 1, 7),  # Sunday 23:50 → Monday 00:35: still week 1
    (20, "01:30", 31 * 60_000_000, 2, 0, 6),  # Sunday 2026-11-01 01:30 EDT, DST day
    (12, "16:00", 45 * 60_000_000, 3, 1, 7),  # Saturday of the break week
]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plans=st.lists(SESSION, max_size=40),
    group_by=st.sampled_from([None, "school", "grade", "grade,school"]),
    window=st.sampled_from([{}, {"from": "2026-10-19", "to": "2026-11-08"}, {"to": "2026-11-01"}]),
)
def test_the_metric_equals_the_fold_at_the_edges(
    client: TestClient, plans: list[Plan], group_by: str | None, window: dict[str, str]
) -> None:
    d = fresh()
    events = load(client, d, EDGES + plans)
    params = {k: v for k, v in {"group_by": group_by, **window}.items() if v is not None}
    body = metric(client, d, **params)
    f = {f"date_{k}": date.fromisoformat(v) for k, v in window.items()}
    names = tuple(sorted(group_by.split(","), key=["school", "grade"].index)) if group_by else ()
    expected = fold.standard(events, d, TZ, RULE, names, **f)
    assert bare(body["rows"]) == expected["rows"]
    assert bare(body["weeks"]) == expected["weeks"]
    assert body["counted_weeks"] == expected["counted_weeks"]
    assert body["standard"] == {"sessions_per_week": 2, "session_minutes": 30, "weeks": 3}
    if "from" not in window:  # the edges' first week is judged and the break week has no day
        assert body["weeks"][0]["week_start"] == FIRST_MONDAY.isoformat()
        by_start = {w["week_start"]: w for w in body["weeks"]}
        assert by_start.get("2026-10-26", {"school_days": 0})["school_days"] == 0


def test_edges_by_hand(client: TestClient) -> None:
    """Weeks W1 2026-10-12, W2 10-19, W3 10-26 (the break: no school day; DST ends on its
    Sunday), W4 11-02. Student 0: two sessions of ≥ 30 min (one exactly 30) in W1, W2 and W4
    → met (W3 is not judged). Student 1: as 0 but one of W2's is a microsecond short → short.
    Student 2: Saturday 10-17 and Sunday 10-18 23:50 → 00:35 (still W1), two in W2, none
    after → on track to 11-01, short to 11-08. Student 3: two sessions in the break week only
    → on track to 11-01 (no counted week yet), short to 11-08 (missed W4)."""
    d = fresh()
    m30, short, m45 = 30 * 60_000_000, 30 * 60_000_000 - 1, 45 * 60_000_000
    plans: list[Plan] = [
        *[(day, "16:00", m30, 0, 0, 6) for day in (0, 2, 7, 9, 21, 23)],
        *[(day, "16:00", m30, 1, 0, 6) for day in (0, 1, 7, 14 + 7, 22)],
        (8, "16:00", short, 1, 0, 6),
        (5, "12:00", m30, 2, 0, 6), (6, "23:50", m45, 2, 0, 6),
        (8, "12:00", m30, 2, 0, 6), (9, "12:00", m30, 2, 0, 6),
        (19, "12:00", m45, 3, 0, 6), (20, "01:30", m45, 3, 0, 6),
    ]  # fmt: skip
    load(client, d, plans)
    body = metric(client, d, to="2026-11-08")
    row = body["rows"][0]
    assert (row["students"], row["met"], row["on_track"], row["short"]) == (4, 1, 0, 3)
    assert [w["school_days"] for w in body["weeks"]] == [5, 5, 0, 5]
    assert [w["students_meeting_week"] for w in body["weeks"]] == [3, 2, 1, 2]
    assert body["counted_weeks"] == 3
    early = metric(client, d, to="2026-11-01")["rows"][0]
    assert (early["met"], early["on_track"], early["short"]) == (0, 3, 1)


def test_cohort_rows_equal_the_fold(client: TestClient) -> None:
    d = fresh()
    plans: list[Plan] = [(day, "16:00", 45 * 60_000_000, s, s % 2, 6)
                         for s in range(4) for day in range(0, 21, 3)]  # fmt: skip
    events = load(client, d, EDGES + plans)
    members = {"c-odd": [f"{d}-stu-1", f"{d}-stu-3"], "c-all": [f"{d}-stu-{i}" for i in range(4)]}
    for cohort, ids in members.items():
        body = {"name": cohort, "student_ids": ids}
        r = client.put(f"/v1/cohorts/{d}/{cohort}", json=body, headers=auth("admin"))
        assert r.status_code in (200, 201), r.text
    got = metric(client, d, group_by="cohort")
    cohorts = {c: set(ids) for c, ids in members.items()}
    assert bare(got["rows"]) == fold.standard(events, d, TZ, RULE, ("cohort",), cohorts)["rows"]
    # A cohort filter goes through the shared filters: the same as its row.
    only = metric(client, d, cohort_id="c-odd")["rows"][0]
    row = next(r for r in got["rows"] if r["cohort_id"] == "c-odd")
    assert [only[k] for k in ("students", "met", "on_track", "short")] == [
        row[k] for k in ("students", "met", "on_track", "short")
    ]


def test_group_by_outside_the_whitelist_is_refused(client: TestClient) -> None:
    for bad in ("tutor", "school,school", "school,grade,subject", "grade;drop"):
        r = client.get(
            "/v1/metrics/dosage-standard",
            params={"district_id": DISTRICTS[-1], "group_by": bad},
            headers=auth("auditor"),
        )
        assert r.status_code == 422, bad


def test_dashboards_never_see_a_small_cell(client: TestClient) -> None:
    d = fresh()
    plans: list[Plan] = [(day, "16:00", 45 * 60_000_000, s, s % 2, 6 + s % 2)
                         for s in range(14) for day in range(0, 28, 2 + s % 3)]  # fmt: skip
    load(client, d, plans)
    for group_by in (None, "school", "grade,school"):
        params = {"group_by": group_by} if group_by else {}
        shown = metric(client, d, "dashboard", **params)
        exact = metric(client, d, "auditor", as_of_position=shown["as_of_position"], **params)
        assert shown["suppressed"] is True  # 14 students: some status is small
        for s, e in zip(shown["rows"], exact["rows"], strict=True):
            cells = [s[k] for k in ("students", "met", "on_track", "short")]
            assert all(v is None or not 0 < v < 10 for v in cells)
            assert sum(v is None for v in cells) != 1  # students = met + on_track + short
            assert all(v is None or v == e[k] for k, v in s.items() if k != "suppressed")
        for w in shown["weeks"]:
            pair = (w["active_students"], w["students_meeting_week"])
            assert all(v is None or not 0 < v < 10 for v in pair)


# -- the student list -------------------------------------------------------------------------


def test_the_short_list_is_by_token_with_a_purpose_and_recorded(client: TestClient) -> None:
    d = fresh()
    plans: list[Plan] = [(day, "16:00", 45 * 60_000_000, s, 0, 6)
                         for s in range(5) for day in range(0, 7 * (s + 1), 3)]  # fmt: skip
    events = load(client, d, EDGES + plans)
    url, params = "/v1/dosage-standard/students", {"district_id": d}
    assert client.get(url, params=params, headers=auth("dashboard", "x")).status_code == 403
    missing = client.get(url, params=params, headers=auth("auditor"))
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "purpose_required"
    body = client.get(url, params=params, headers=auth("auditor", "dosage review")).json()
    expected = fold.short_students(events, d, TZ, RULE)
    got = body["students"]
    assert len(got) == len(expected) > 0
    assert sorted((s["met_weeks"], s["counted_weeks"], s["sessions_completed"]) for s in got) == (
        sorted(expected.values())
    )
    assert all(f"{d}-stu" not in json.dumps(s) for s in got)  # tokens, never ids
    log = client.get(
        "/v1/privacy/disclosures", params={"district_id": d}, headers=auth("admin")
    ).json()
    last = log["disclosures"][-1]
    assert last["endpoint"] == "GET /v1/dosage-standard/students"
    assert last["purpose"] == "dosage review"
    assert sorted(last["students"]) == sorted(s["student_token"] for s in got)
    # The list narrows like the metric: another provider's sessions are nobody's here.
    elsewhere = {**params, "provider": "no-such-provider"}
    other = client.get(url, params=elsewhere, headers=auth("auditor", "dosage review")).json()
    assert other["students"] == [] and other["filters"]["provider"] == "no-such-provider"


# -- the Ed-Fi export -------------------------------------------------------------------------

URI = "uri://ed-fi.org/"


def check_edfi(files: dict[str, list[dict[str, Any]]], ids: set[str]) -> None:
    """The Ed-Fi v5 resource shapes: field names, references, descriptors as URIs."""
    assert sorted(files) == sorted(["interventions.json", "studentInterventionAssociations.json",
                                    "studentInterventionAttendanceEvents.json"])  # fmt: skip
    (intervention,) = files["interventions.json"]
    ref = {"educationOrganizationId": EDFI_ORG, "interventionIdentificationCode": "tutoring"}
    assert intervention["educationOrganizationReference"] == {"educationOrganizationId": EDFI_ORG}
    assert intervention["interventionIdentificationCode"] == "tutoring"
    assert intervention["interventionClassDescriptor"].startswith(
        URI + "InterventionClassDescriptor#"
    )
    assert intervention["deliveryMethodDescriptor"].startswith(URI + "DeliveryMethodDescriptor#")
    assert intervention["minDosage"] == 2 * 30 * 3
    assert set(intervention) <= {"interventionIdentificationCode", "educationOrganizationReference",
                                 "interventionClassDescriptor", "deliveryMethodDescriptor",
                                 "beginDate", "endDate", "minDosage"}  # fmt: skip
    associations = files["studentInterventionAssociations.json"]
    assert {a["studentReference"]["studentUniqueId"] for a in associations} == ids
    for a in associations:
        assert a["interventionReference"] == ref and set(a) == {
            "interventionReference",
            "studentReference",
            "dosage",
        }
    for e in files["studentInterventionAttendanceEvents.json"]:
        assert set(e) == {
            "attendanceEventCategoryDescriptor",
            "eventDate",
            "interventionReference",
            "studentReference",
            "interventionDuration",
        }
        assert e["attendanceEventCategoryDescriptor"] == (
            URI + "AttendanceEventCategoryDescriptor#In Attendance"
        )
        assert e["interventionReference"] == ref and e["studentReference"]["studentUniqueId"] in ids
        assert isinstance(e["interventionDuration"], int) and e["interventionDuration"] >= 0
        date.fromisoformat(e["eventDate"])


def test_edfi_export_shapes_disclosure_and_idempotence(client: TestClient, home: Path) -> None:
    d = fresh()
    plans: list[Plan] = [(day, "16:00", 45 * 60_000_000, s, 0, 6)
                         for s in range(3) for day in range(0, 14, 4)]  # fmt: skip
    events = load(client, d, EDGES + plans)
    url = "/v1/exports/edfi"
    params = {"district_id": d, "from": "2026-10-12", "to": "2026-11-15"}
    assert client.get(url, params=params, headers=auth("auditor", "warehouse")).status_code == 403
    assert client.get(url, params=params, headers=auth("admin")).status_code == 422
    first = client.get(url, params=params, headers=auth("admin", "state warehouse load"))
    assert first.status_code == 200, first.text
    body = first.json()
    ids = {e["payload"]["student_id"] for e in events if e["type"] == "session.requested"}
    check_edfi(body["files"], ids)
    attendance = body["files"]["studentInterventionAttendanceEvents.json"]
    by_day = {(a["studentReference"]["studentUniqueId"], a["eventDate"]) for a in attendance}
    assert len(attendance) == len(by_day)  # one event per student and date
    found = {
        (a["studentReference"]["studentUniqueId"], a["eventDate"], a["interventionDuration"])
        for a in attendance
    }
    # Two sessions on one day (30 + 45 minutes) are one event; 29:59.999999 is 29 minutes;
    # Sunday 23:50 → Monday 00:35 is on the Sunday of its request.
    assert {(f"{d}-stu-0", "2026-10-12", 75), (f"{d}-stu-0", "2026-10-13", 29),
            (f"{d}-stu-1", "2026-10-18", 45)} <= found  # fmt: skip
    at = {**params, "as_of_position": body["as_of_position"]}
    again = client.get(url, params=at, headers=auth("admin", "state warehouse load"))
    assert again.content == first.content
    log = client.get(
        "/v1/privacy/disclosures", params={"district_id": d}, headers=auth("admin")
    ).json()
    assert [x["endpoint"] for x in log["disclosures"][-2:]] == ["GET /v1/exports/edfi"] * 2
    assert len(log["disclosures"][-1]["students"]) == len(ids)
    # The command writes the same bytes twice (its own embedded projections, same position).
    outs = [cli_export(home, d, body["as_of_position"], home / f"edfi-{d}-{i}") for i in (1, 2)]
    for name, resources in body["files"].items():
        written = [(out / name).read_bytes() for out in outs]
        assert written[0] == written[1]
        assert json.loads(written[0]) == resources


def cli_export(home: Path, d: str, position: int, out: Path) -> Path:
    env = {**os.environ, "TUTORLEDGER_EVENT_STORE": f"sqlite:///{home}/l.db",
           "TUTORLEDGER_CLICKHOUSE": f"chdb://{out}-ch?database=cli",
           "TUTORLEDGER_DISTRICTS_FILE": str(home / "districts.json"),
           "TUTORLEDGER_VAR_DIR": str(home / "var-cli")}  # fmt: skip
    args = ["export-edfi", "--district", d, "--from", "2026-10-12", "--to", "2026-11-15",
            "--purpose", "state warehouse load", "--out", str(out),
            "--as-of-position", str(position)]  # fmt: skip
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tutorledger"), *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["as_of_position"] == position
    return out


def test_export_needs_the_district_s_education_organization(client: TestClient) -> None:
    r = client.get(
        "/v1/exports/edfi",
        params={"district_id": "std-unset", "from": "2026-10-12", "to": "2026-10-18"},
        headers=auth("admin", "warehouse"),
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "edfi_not_configured"


# -- the rule and its settings ----------------------------------------------------------------


@given(met=st.integers(0, 30), due=st.integers(0, 30), weeks=st.integers(1, 20))
def test_judge(met: int, due: int, weeks: int) -> None:
    status = judge(met, due, DosageStandard(weeks=weeks))
    if met >= weeks:
        assert status is Status.MET
    else:
        assert status is (Status.ON_TRACK if met >= due else Status.SHORT)


@given(start=st.dates(date(2026, 1, 1), date(2027, 12, 31)), span=st.integers(0, 13))
def test_school_days_leave_out_breaks(start: date, span: int) -> None:
    standard = DosageStandard(breaks=({"start": start, "end": start + timedelta(days=span)},))
    monday = start - timedelta(days=start.weekday())
    days = standard.school_days(monday, (1, 2, 3, 4, 5))
    expected = sum(
        (day := monday + timedelta(days=i)).isoweekday() <= 5
        and not start <= day <= start + timedelta(days=span)
        for i in range(7)
    )
    assert days == expected


def test_defaults_and_bad_settings() -> None:
    profile = parse_profiles({"d": {}}, TZ)["d"]
    standard = profile.dosage_standard
    assert (standard.sessions_per_week, standard.session_minutes, standard.weeks) == (3, 30, 10)
    assert profile.edfi.education_organization_id is None
    for bad in ({"weeks": 0}, {"breaks": [{"start": "2026-12-24", "end": "2026-12-20"}]},
                {"sessions": 3}):  # fmt: skip
        with pytest.raises(ValueError, match="dosage_standard"):
            parse_profiles({"d": {"dosage_standard": bad}}, TZ)
    with pytest.raises(ValidationError):
        DosageStandard(session_minutes=0)


def test_an_erased_student_leaves_the_export_and_no_figure_changes(client: TestClient) -> None:
    d = fresh()
    plans: list[Plan] = [(day, "16:00", 45 * 60_000_000, s, 0, 6)
                         for s in range(3) for day in range(0, 21, 2)]  # fmt: skip
    load(client, d, plans)
    params = {"district_id": d, "from": "2026-10-12", "to": "2026-11-15"}
    before = metric(client, d, **params)
    erased = client.post(
        f"/v1/privacy/students/{d}/{d}-stu-1/erase",
        json={"reason": "parent_request"},
        headers=auth("admin"),
    )
    assert erased.status_code == 200, erased.text
    after = metric(client, d, **params)
    assert (after["rows"], after["weeks"]) == (before["rows"], before["weeks"])
    files = client.get(
        "/v1/exports/edfi", params=params, headers=auth("admin", "warehouse")
    ).json()["files"]
    check_edfi(files, {f"{d}-stu-0", f"{d}-stu-2"})
    assert f"{d}-stu-1" not in json.dumps(files)
