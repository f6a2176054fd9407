"""Usage vs grades end to end on a real SQLite ledger and embedded chdb: `import-grades` (CLI)
records tokens only, once, or nothing when a row is bad; `/v1/metrics/outcomes` equals the
independent fold on a district with a built-in association, for a cohort too, with small
bands withheld from dashboards.

chdb holds one data dir per process, so the module shares ONE app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grade_events as ge
import pytest
import reference_metrics as ref
from builders import envelope, exact, write_keys
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tutorledger.api.app import create_app
from tutorledger.api.cli.main import app as cli
from tutorledger.consumers.projector import decode
from tutorledger.infra.settings import Settings

D = "og"
ADMIN, DASH = "outcomes-admin-key-0000000", "outcomes-dashboard-key-000"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outcomes")


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    specs = [
        {"key": ADMIN, "role": "admin", "districts": ["*"]},
        {"key": DASH, "role": "dashboard", "districts": ["*"]},
    ]
    settings = Settings(
        event_store=f"sqlite:///{home}/l.db",
        clickhouse=f"chdb://{home}/ch?database=outcomes",
        api_keys_file=write_keys(home / "keys.json", specs),
        var_dir=home / "var",
    )
    with TestClient(create_app(settings)) as c:
        yield c


def import_grades(home: Path, name: str, text: str) -> Any:
    (home / name).write_text(text)
    (home / "grades.toml").write_text(ge.mapping_toml())
    args = [
        "import-grades",
        str(home / name),
        "--district",
        D,
        "--mapping",
        str(home / "grades.toml"),
    ]
    return CliRunner().invoke(cli, args, env={"TUTORLEDGER_EVENT_STORE": f"sqlite:///{home}/l.db"})


@pytest.fixture(scope="module")
def graded(client: TestClient, home: Path) -> ge.GradedDistrict:
    g = ge.generate(D)
    for i in range(0, len(g.events), 1000):
        batch = g.events[i : i + 1000]
        response = client.post(
            "/v1/events", json={"events": batch}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert {r["status"] for r in response.json()["results"]} == {"accepted"}
    done = import_grades(home, "grades.csv", ge.csv_text(g.rows))
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["recorded"], summary["unchanged"]) == (len(g.rows), 0)
    return g


def outcomes(client: TestClient, key: str = ADMIN, **params: Any) -> Any:
    query = {
        "district_id": D,
        "subject": "algebra",
        "term_from": ge.TERM_FROM,
        "term_to": ge.TERM_TO,
    }
    return client.get(
        "/v1/metrics/outcomes",
        params={**query, **params},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_outcomes_equal_the_fold_and_show_the_association(
    client: TestClient, graded: ge.GradedDistrict
) -> None:
    response = outcomes(client)
    assert response.status_code == 200, response.text
    body = exact(response.json())
    assert body["rows"] == list(ref.outcome_bands(graded.grades, graded.used).values())
    assert (body["window_start"], body["window_end"]) == ("2026-10-17", "2026-11-06")
    changes = [r["mean_change"] for r in body["rows"]]
    assert changes == sorted(changes) and changes[-1] - changes[0] > 10  # the planted association
    assert "not effect" in body["interpretation"]
    csv = outcomes(client, format="csv")
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("band,students")


def test_reimport_stores_nothing_and_a_correction_counts(
    client: TestClient, home: Path, graded: ge.GradedDistrict
) -> None:
    again = import_grades(home, "again.csv", ge.csv_text(graded.rows))
    assert json.loads(again.stdout.strip().splitlines()[-1])["recorded"] == 0
    student = next(iter(graded.grades))
    before, _ = graded.grades[student]
    fixed = [{"student": student, "subject": "algebra", "term": ge.TERM_TO, "grade": "A"}]
    assert (
        json.loads(
            import_grades(home, "fix.csv", ge.csv_text(fixed)).stdout.strip().splitlines()[-1]
        )["recorded"]
        == 1
    )
    graded.grades[student] = (before, ge.LETTERS["A"])
    body = exact(outcomes(client).json())
    assert body["rows"] == list(ref.outcome_bands(graded.grades, graded.used).values())
    ledger = client.app.state.runtime.ledger  # type: ignore[attr-defined]
    stored = [decode(ledger, n) for n in ledger.recorder.select_notifications(start=1, limit=10**6)]
    grades = [e for e in stored if e["type"] == "grade.recorded"]
    assert len(grades) == len(graded.rows) + 1
    assert not any(s in json.dumps(grades) for s in graded.grades)  # tokens only


def test_bad_rows_record_nothing(client: TestClient, home: Path, graded: ge.GradedDistrict) -> None:
    head = exact(outcomes(client).json())["as_of_position"]
    rows = [
        {"student": "new-1", "subject": "algebra", "term": ge.TERM_FROM, "grade": "88"},
        {"student": "new-1", "subject": "algebra", "term": "2027-spring", "grade": "88"},
        {"student": "new-2", "subject": "algebra", "term": ge.TERM_FROM, "grade": "Z"},
        {"student": "new 3", "subject": "algebra", "term": ge.TERM_FROM, "grade": "101"},
        {"student": "new-1", "subject": "Algebra", "term": ge.TERM_FROM, "grade": "70"},
    ]
    bad = import_grades(home, "bad.csv", ge.csv_text(rows))
    assert bad.exit_code == 1
    details = json.loads(bad.stdout.strip().splitlines()[-1])["error"]["details"]
    assert [(p["line"], p.get("column")) for p in details] == [
        (3, "term"),
        (4, "grade"),
        (5, "student"),
        (5, "grade"),
        (6, None),
    ]
    assert "new-2" not in bad.output and "new 3" not in bad.output
    assert exact(outcomes(client).json())["as_of_position"] == head


def test_cohort_outcomes_and_positions(client: TestClient, graded: ge.GradedDistrict) -> None:
    members = sorted(graded.grades)[::2]
    put = client.put(f"/v1/cohorts/{D}/half", json={"name": "Half", "student_ids": members},
                     headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
    assert put.status_code == 200
    body = exact(outcomes(client, cohort_id="half").json())
    mine = {s: graded.grades[s] for s in members}
    assert body["rows"] == list(ref.outcome_bands(mine, graded.used).values())
    early = outcomes(client, as_of_position=len(graded.events))  # before any grade
    assert early.status_code == 404
    backwards = outcomes(client, term_from=ge.TERM_TO, term_to=ge.TERM_FROM)
    assert backwards.status_code == 422


def publish(client: TestClient) -> None:
    """Dashboards read published positions (docs/privacy.md): one request of a later local
    day, by a student with no grades, publishes the run of events before it."""
    later = envelope(D, "og-later", "requested", "2030-01-07T10:00:00-05:00",
                     {"school_id": "sch-01", "student_id": "og-later", "grade": 8,
                      "subject": "geometry"})  # fmt: skip
    posted = client.post("/v1/events", json={"events": [later]},
                         headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
    assert posted.status_code in (200, 201, 207), posted.text


def test_dashboards_see_small_bands_withheld(client: TestClient, graded: ge.GradedDistrict) -> None:
    publish(client)
    exact_rows = exact(outcomes(client).json())["rows"]
    body = outcomes(client, key=DASH).json()
    small = [r["band"] for r in exact_rows if 0 < r["students"] < 10]
    assert small and body["suppressed"]
    shown = {r["band"]: r for r in body["rows"]}
    for band in small:
        assert shown[band]["students"] is None and shown[band]["mean_change"] is None
    assert sum(r["students"] is None for r in body["rows"]) >= 2  # complementary


def test_dashboard_outcomes_table_and_cohort_picker(
    client: TestClient, graded: ge.GradedDistrict
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    picked = {"name": "Picked", "student_ids": sorted(graded.grades)[1::2]}
    client.put(f"/v1/cohorts/{D}/picked", json=picked, headers=admin)
    assert client.post("/signin", data={"key": ADMIN}, follow_redirects=False).status_code == 303
    page = client.get(f"/dashboard/{D}/outcomes")
    assert page.status_code == 200, page.text
    api = exact(outcomes(client).json())
    for row in api["rows"]:
        assert f'data-key="{row["band"]}"' in page.text
        assert f'data-col="mean_change" data-value="{row["mean_change"]}"' in page.text
    assert "not effect" in page.text and 'id="o-subject"' in page.text
    district = client.get(f"/dashboard/{D}", params={"cohort_id": "picked"})
    assert district.status_code == 200 and 'value="picked" selected' in district.text
    params = {"district_id": D, "cohort_id": "picked"}
    participation = exact(
        client.get("/v1/metrics/participation", params=params, headers=admin).json()
    )
    assert f'data-col="cohort_size" data-value="{participation["cohort_size"]}"' in district.text
    missing = client.get(f"/dashboard/{D}", params={"cohort_id": "nobody"})
    assert missing.status_code == 404 and "unknown_cohort" in missing.text
    client.post("/signout")


def test_a_students_record_export_includes_their_grades(
    client: TestClient, graded: ge.GradedDistrict
) -> None:
    student = sorted(graded.grades)[3]
    headers = {"Authorization": f"Bearer {ADMIN}", "X-Purpose": "parent request"}
    record = client.get(f"/v1/privacy/students/{D}/{student}", headers=headers)
    assert record.status_code == 200, record.text
    events = [e["event"] for s in record.json()["sessions"] for e in s["events"]]
    grades = [e for e in events if e["type"] == "grade.recorded"]
    assert sorted(g["payload"]["term"] for g in grades) == [ge.TERM_FROM, ge.TERM_TO]
    assert len([e for e in events if e["type"] == "session.requested"]) >= 4
