"""Student groups from the roster: OneRoster metadata flags and demographics, a Clever
students.csv, bad rows refused with file and line (nothing recorded), re-import idempotent,
no name, id or birth date stored; and the interval arithmetic behind equity gaps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tutorledger.consumers.projector import decode
from tutorledger.domain.ledger import Ledger
from tutorledger.domain.roster import InvalidRoster
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.importers.student_groups import import_groups, parse_attributes
from tutorledger.infra.settings import Settings
from tutorledger.projections.student_groups import newcombe, wilson

D = "grp-unit"
DAY = date(2026, 9, 1)
USERS = (
    "sourcedId,status,role,givenName,familyName,grades,orgSourcedIds,identifier,"
    "metadata.ell,metadata.frl,metadata.iep,metadata.504\n"
    "usr-0001,active,student,Ana,Zamora,05,sch,sis-1,true,true,false,false\n"
    "usr-0002,active,student,Bo,Young,05,sch,sis-2,false,TRUE,false,\n"
    "usr-0003,active,student,Cy,Xu,06,sch,sis-3,false,false,true,yes\n"
    "t1,active,teacher,Dee,Wu,,sch,tea-1,,,,\n"
    "usr-0004,tobedeleted,student,Ed,Vo,06,sch,sis-4,true,true,true,true\n"
)
DEMOGRAPHICS = (
    "sourcedId,status,birthDate,sex,americanIndianOrAlaskaNative,asian,"
    "blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,"
    "demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,cityOfBirth\n"
    "usr-0001,active,2014-03-09,female,false,false,false,false,false,false,true,Riverdale\n"
    "usr-0002,active,2014-07-21,male,false,false,true,false,false,false,false,Riverdale\n"
    "t1,active,1980-01-01,female,false,false,false,false,true,false,false,Elsewhere\n"
)
CLEVER = (
    "School_id,Student_id,Last_name,First_name,DOB,Gender,Race,Hispanic_Latino,Ell_status,"
    "Frl_status,IEP_status,Section_504_status\n"
    "sch,c1,Zamora,Ana,2014-03-09,F,Asian,N,Y,Free,N,N\n"
    "sch,c2,Young,Bo,2014-07-21,M,Black or African American,Y,N,Paid,Y,N\n"
    "sch,c3,Xu,Cy,2014-01-02,X,Unknown,N,N,Reduced,N,Y\n"
)


def bundle(**files: str) -> dict[str, bytes]:
    return {f"{name}.csv": text.encode() for name, text in files.items()}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    app = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/ledger.db"))
    yield app
    app.close()


def zipped(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def test_oneroster_flags_and_demographics() -> None:
    attrs = parse_attributes(bundle(users=USERS, demographics=DEMOGRAPHICS))
    assert attrs.students == [
        "usr-0001",
        "usr-0002",
        "usr-0003",
    ]  # the teacher and the deleted row are not
    members = {code: sorted(ids) for code, ids in attrs.members.items()}
    assert members["ell"] == ["usr-0001"]
    assert members["econ_disadv"] == ["usr-0001", "usr-0002"]
    assert members["sped"] == ["usr-0003"]
    assert members["s504"] == ["usr-0003"]
    assert members["female"] == ["usr-0001"] and members["male"] == ["usr-0002"]
    assert members["hispanic"] == ["usr-0001"] and members["black"] == ["usr-0002"]
    assert members["white"] == []  # the teacher's demographics count for nobody
    assert "gifted" not in members  # no column for it: not recorded at all


def test_identifier_as_student_id() -> None:
    attrs = parse_attributes(bundle(users=USERS), "identifier")
    assert attrs.students == ["sis-1", "sis-2", "sis-3"]
    assert attrs.members["ell"] == ["sis-1"]


def test_clever_students() -> None:
    attrs = parse_attributes(bundle(students=CLEVER))
    members = {code: sorted(ids) for code, ids in attrs.members.items()}
    assert attrs.students == ["c1", "c2", "c3"]
    assert members["ell"] == ["c1"]
    assert members["econ_disadv"] == ["c1", "c3"]
    assert members["sped"] == ["c2"] and members["s504"] == ["c3"]
    assert members["female"] == ["c1"] and members["male"] == ["c2"]
    assert members["sex_other"] == ["c3"]
    assert members["asian"] == ["c1"] and members["black"] == ["c2"]
    assert members["hispanic"] == ["c2"]


@pytest.mark.parametrize(
    ("files", "where"),
    [
        ({"users": USERS.replace("sis-2,false,TRUE", "sis-2,maybe,TRUE")},
         ("users.csv", 3, "metadata.ell")),
        ({"users": USERS, "demographics": DEMOGRAPHICS.replace(",male,", ",boy,")},
         ("demographics.csv", 3, "sex")),
        ({"users": USERS, "demographics": DEMOGRAPHICS + DEMOGRAPHICS.splitlines()[1] + "\n"},
         ("demographics.csv", 5, "sourcedId")),
        ({"users": USERS.replace("usr-0002,active", "usr-0001,active")},
         ("users.csv", 3, "sourcedId")),
        ({"students": CLEVER.replace("Paid", "Sometimes")}, ("students.csv", 3, "frl_status")),
        ({"students": CLEVER.replace(",Asian,", ",Martian,")}, ("students.csv", 2, "race")),
        ({"users": USERS + "usr-0009,active,student\n"}, ("users.csv", 7, None)),
    ],
)  # fmt: skip
def test_bad_rows_named_and_nothing_recorded(
    ledger: Ledger, tmp_path: Path, files: dict[str, str], where: tuple[str, int, str | None]
) -> None:
    source = zipped(tmp_path, bundle(**files))
    with pytest.raises(InvalidRoster) as caught:
        import_groups(ledger, source, D, DAY)
    problems = caught.value.details
    assert [(p["file"], p["line"], p.get("column")) for p in problems] == [where]
    assert ledger.recorder.max_notification_id() in (None, 0)


def stored(ledger: Ledger) -> list[dict[str, object]]:
    return [decode(ledger, n) for n in ledger.recorder.select_notifications(start=1, limit=10**6)]


def test_import_records_tokens_once_and_no_identity(ledger: Ledger, tmp_path: Path) -> None:
    source = zipped(tmp_path, bundle(users=USERS, demographics=DEMOGRAPHICS))
    first = import_groups(ledger, source, D, DAY)
    assert first.students == 3 and first.groups["ell"] == 1 and first.groups["female"] == 1
    assert all(p is not None for p in first.positions.values())
    events = stored(ledger)
    assert {e["cohort_id"] for e in events} == {f"roster.{c}" for c in first.positions}
    assert all(e["payload"]["name"].endswith("roster of 2026-09-01") for e in events)
    again = import_groups(ledger, source, D, DAY)
    assert set(again.positions.values()) == {None}
    assert len(stored(ledger)) == len(events)  # idempotent: nothing more recorded
    changed = zipped(tmp_path, bundle(users=USERS.replace("sis-2,false,TRUE", "sis-2,true,TRUE"),
                                      demographics=DEMOGRAPHICS))  # fmt: skip
    third = import_groups(ledger, changed, D, DAY)
    assert [c for c, p in third.positions.items() if p is not None] == ["ell"]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.db*"))
    for secret in ("usr-0001", "sis-1", "Zamora", "Ana", "2014-03-09", "Riverdale"):
        assert secret.encode() not in raw, secret


# -- the interval arithmetic ------------------------------------------------------------------


def test_wilson_and_newcombe_match_newcombe_1998() -> None:
    """Newcombe (1998), Statistics in Medicine 17: 857-872 and 873-890, worked examples."""
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    d, low, high = newcombe(56, 70, 48, 80)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)
    d, low, high = newcombe(9, 10, 3, 10)
    assert (round(low, 4), round(high, 4)) == (0.1705, 0.8090)
    assert newcombe(13, 13, 0, 7)[2] == 1.0 and newcombe(0, 7, 13, 13)[1] == -1.0  # at the edges


@given(st.integers(1, 400), st.integers(1, 400), st.data())
def test_newcombe_interval_holds_the_difference(n1: int, n2: int, data: st.DataObject) -> None:
    x1, x2 = data.draw(st.integers(0, n1)), data.draw(st.integers(0, n2))
    d, low, high = newcombe(x1, n1, x2, n2)
    assert -1 <= low <= d <= high <= 1
    mirrored = newcombe(x2, n2, x1, n1)
    assert mirrored[1] == pytest.approx(-high) and mirrored[2] == pytest.approx(-low)


def test_import_groups_command_records_then_refuses_a_bad_row_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tutorledger.api.cli.main import app

    store = f"sqlite:///{tmp_path}/ledger.db"
    args = ["import-groups", "--district", D, "--as-of", "2026-09-01", "--event-store", store]
    good = CliRunner().invoke(app, [*args[:1], str(zipped(tmp_path, bundle(users=USERS))),
                                    *args[1:]])  # fmt: skip
    assert good.exit_code == 0, good.output
    assert "ell" in good.output
    bad_files = bundle(users=USERS.replace("sis-2,false,TRUE", "sis-2,maybe,TRUE"))
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    for name, data in bad_files.items():
        (bad_dir / name).write_bytes(data)
    bad = CliRunner().invoke(app, [args[0], str(bad_dir), *args[1:]])
    assert bad.exit_code == 1 and "users.csv" in bad.output and "Traceback" not in bad.output
    with_again = CliRunner().invoke(app, [args[0], str(tmp_path / "bundle"), *args[1:]])
    assert with_again.exit_code == 0 and "unchanged" in with_again.output
