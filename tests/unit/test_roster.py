"""Roster import: the one-school-per-student rule, OneRoster parsing, bad rows refused whole
with their lines, only counts recorded (no identity reaches the ledger), re-import idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rosters import MOVER, TRANSFER_DAY, Bundle, generated_bundle, student

from tutorledger.domain.ledger import Ledger
from tutorledger.domain.roster import InvalidRoster, Placement, enrolment_on
from tutorledger.infra.eventstore.store import open_ledger
from tutorledger.infra.importers.oneroster import parse_roster, read_bundle
from tutorledger.infra.importers.roster import import_roster
from tutorledger.infra.settings import Settings

BEFORE, AFTER = TRANSFER_DAY - timedelta(days=30), TRANSFER_DAY + timedelta(days=30)
DAY0 = date(2026, 1, 1)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    app = open_ledger(Settings(event_store=f"sqlite:///{tmp_path}/ledger.db"))
    yield app
    app.close()


# -- the rule --------------------------------------------------------------------------------

placements = st.lists(
    st.builds(
        Placement,
        student=st.integers(0, 8),
        school_id=st.sampled_from(["a", "b", "c"]),
        grade=st.one_of(st.none(), st.integers(0, 12)),
        begin=st.one_of(st.none(), st.integers(-5, 5).map(lambda d: DAY0 + timedelta(days=d))),
        end=st.one_of(st.none(), st.integers(-5, 5).map(lambda d: DAY0 + timedelta(days=d))),
    ),
    max_size=30,
)


@given(placements, st.integers(-6, 6))
def test_each_active_student_counts_once_at_the_latest_begun_school(
    ps: list[Placement], offset: int
) -> None:
    day = DAY0 + timedelta(days=offset)
    result = enrolment_on(ps, day)
    active = [p for p in ps if p.active_on(day)]
    by_student: dict[int, list[Placement]] = {}
    for p in active:
        by_student.setdefault(p.student, []).append(p)
    # Grade travels with the student in a real roster: take the chosen placement's.
    expected: dict[str, dict[str, int]] = {}
    outside = 0
    for options in by_student.values():
        best = max(options, key=lambda p: (p.begin or date.min, [-ord(c) for c in p.school_id]))
        if best.grade is None:
            outside += 1
            continue
        grades = expected.setdefault(best.school_id, {})
        grades[str(best.grade)] = grades.get(str(best.grade), 0) + 1
    assert result.by_school == expected
    assert result.students == len(by_student) - outside
    assert result.outside_k12 == outside
    assert result.in_several_schools == sum(
        len({p.school_id for p in o}) > 1 for o in by_student.values()
    )


def test_a_moved_student_counts_at_the_new_school_from_the_day_they_began() -> None:
    old = Placement(1, "b-old", 7, date(2025, 8, 20), None)
    new = Placement(1, "a-new", 7, TRANSFER_DAY, None)
    assert enrolment_on([old, new], BEFORE).by_school == {"b-old": {"7": 1}}
    after = enrolment_on([new, old], AFTER)
    assert after.by_school == {"a-new": {"7": 1}}
    assert after.in_several_schools == 1


# -- parsing a bundle ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["zip", "dir", "bytes"])
def test_generated_bundle_gives_enrolment_by_school_and_grade(tmp_path: Path, form: str) -> None:
    bundle = generated_bundle({"a": 26, "b": 13})
    source: Path | bytes = {
        "zip": lambda: bundle.write_zip(tmp_path / "r.zip"),
        "dir": lambda: bundle.write_dir(tmp_path / "r"),
        "bytes": bundle.zip_bytes,
    }[form]()
    with read_bundle(source) as files:
        roster = parse_roster(files)
    assert roster.schools == {"a": "A School", "b": "B School"}
    assert roster.students == 26 + 13 + 2 + 1  # two pre-K students and the mover
    before, after = enrolment_on(roster.placements, BEFORE), enrolment_on(roster.placements, AFTER)
    assert before.by_school["a"] == {str(g): 3 if g == 7 else 2 for g in range(13)}
    assert before.by_school["b"] == {str(g): 1 for g in range(13)}
    assert after.by_school["a"]["7"] == 2 and after.by_school["b"]["7"] == 2
    assert before.students == after.students == 26 + 13 + 1
    assert (before.in_several_schools, after.in_several_schools) == (0, 1)
    assert before.outside_k12 == 2


def test_identifier_column_can_be_the_school_id() -> None:
    with read_bundle(generated_bundle({"a": 2, "b": 1}).zip_bytes()) as files:
        roster = parse_roster(files, "identifier")
    assert roster.schools == {"code-a": "A School", "code-b": "B School"}


def test_without_enrollments_the_users_orgs_place_students() -> None:
    files = {n: t.encode() for n, t in generated_bundle({"a": 13, "b": 13}).files().items()}
    del files["enrollments.csv"]
    result = enrolment_on(parse_roster(files).placements, BEFORE)
    # Undated placements: the mover is in both schools; the smaller school id wins.
    assert result.by_school["a"]["7"] == 2 and result.by_school["b"]["7"] == 1


def bad_bundle() -> tuple[Bundle, list[tuple[str, int]]]:
    """A bundle with one bad row per kind, and the (file, line) of each."""
    bundle = generated_bundle({"a": 4, "b": 4})
    users_end = len(bundle.users) + 1  # header is line 1
    bundle.raw_lines["users.csv"] = ["stu-guid-short,,,true,a,student"]
    bundle.users.append(student(70001, "14x", "a"))
    bundle.enrollments.append(
        {
            "sourcedId": "e-x",
            "schoolSourcedId": "org-nowhere",
            "userSourcedId": MOVER,
            "role": "student",
        }  # fmt: skip
    )
    bundle.enrollments.append(
        {
            "sourcedId": "e-y",
            "schoolSourcedId": "a",
            "userSourcedId": MOVER,
            "role": "student",
            "beginDate": "2026-13-01",
        }  # fmt: skip
    )
    enrol_end = len(bundle.enrollments) + 1
    expected = [
        ("users.csv", users_end + 1),  # the bad grade (DictWriter rows come first)
        ("users.csv", users_end + 2),  # the short raw line, appended after them
        ("enrollments.csv", enrol_end - 1),
        ("enrollments.csv", enrol_end),
    ]
    return bundle, expected


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_recorded(
    ledger: Ledger, tmp_path: Path
) -> None:
    bundle, expected = bad_bundle()
    with pytest.raises(InvalidRoster) as caught:
        import_roster(ledger, bundle.write_zip(tmp_path / "bad.zip"), "d-1", BEFORE)
    problems = caught.value.details
    assert caught.value.code == "invalid_roster"
    assert sorted((p["file"], p["line"]) for p in problems) == sorted(expected)
    by_line = {(p["file"], p["line"]): p for p in problems}
    assert by_line[expected[0]]["column"] == "grades"
    assert "expected 18 fields, found 6" in by_line[expected[1]]["problem"]
    assert by_line[expected[2]]["column"] == "schoolSourcedId"
    assert "YYYY-MM-DD" in by_line[expected[3]]["problem"]
    assert ledger.recorder.max_notification_id() in (None, 0)
    text = repr(caught.value.details) + caught.value.message
    assert not [s for s in bundle.personal_strings() if s in text]


def test_missing_files_and_columns_and_not_a_zip_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRoster, match="nothing recorded"), read_bundle(b"not a zip"):
        pass
    files = {"orgs.csv": b"sourcedId,name\na,A\n"}
    with pytest.raises(InvalidRoster) as caught:
        parse_roster(files)
    assert {(p["file"], p["line"]) for p in caught.value.details} == {
        ("orgs.csv", 1),
        ("users.csv", 0),
    }


def test_import_records_only_counts_and_a_reimport_records_nothing(
    ledger: Ledger, tmp_path: Path
) -> None:
    bundle = generated_bundle({"a": 26, "b": 13})
    source = bundle.write_zip(tmp_path / "r.zip")
    first = import_roster(ledger, source, "d-1", BEFORE)
    assert [(s.school_id, s.enrolled, s.status) for s in first.schools] == [
        ("a", 27, "recorded"),
        ("b", 13, "recorded"),
    ]
    assert (first.students_counted, first.in_several_schools, first.outside_k12) == (40, 0, 2)
    school = ledger.get_school("d-1", "a")
    assert school is not None and school.latest["enrollment"]["7"] == 3
    assert school.latest["as_of"] == BEFORE.isoformat()
    head = ledger.recorder.max_notification_id()
    again = import_roster(ledger, source, "d-1", BEFORE)
    assert {s.status for s in again.schools} == {"unchanged"}
    assert ledger.recorder.max_notification_id() == head
    later = import_roster(ledger, source, "d-1", AFTER)
    assert [s.enrolled for s in later.schools] == [26, 14]
    assert ledger.get_school("d-1", "b").latest["enrollment"]["7"] == 2  # type: ignore[union-attr]
    ledger.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.db*"))
    leaked = [s for s in bundle.personal_strings() if s.encode() in stored]
    assert leaked == []
