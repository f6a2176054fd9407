"""OneRoster 1.1 CSV bundles (a zip or a directory): schools and student placements.

Reads `orgs.csv`, `users.csv` and, when present, `enrollments.csv`; every other file is
ignored. Everything is checked before anything is used, and every bad row is reported with
its file and line. Student identifiers, names, e-mails and birth dates stay inside this
module: students become indexes local to one parse, and problems never quote a row.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Literal

from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.domain.roster import InvalidRoster, Placement, RosterProblem

FILES = ("orgs.csv", "users.csv", "enrollments.csv")
REQUIRED_COLUMNS = {
    "orgs.csv": ("sourcedId", "name", "type"),
    "users.csv": ("sourcedId", "role", "grades", "orgSourcedIds"),
    "enrollments.csv": ("schoolSourcedId", "userSourcedId", "role"),
}
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
MAX_LISTED_PROBLEMS = 1000
SchoolKey = Literal["sourcedId", "identifier"]
# CEDS grade levels; K-12 count, the others (infants, pre-K, transitional K, ungraded,
# post-secondary, "Other") are recognised but outside the enrolment figures.
K12 = {"KG": 0, "K": 0, **{f"{g:02d}": g for g in range(1, 13)}, **{str(g): g for g in range(13)}}
OUTSIDE_K12 = {"IT", "PR", "PK", "TK", "PS", "13", "UG", "OTHER"}
_SCHOOL_ID = re.compile(DISTRICT_PATTERN)

Row = tuple[int, dict[str, str]]


@dataclass
class Roster:
    """The schools a roster names and where its students are placed (no identities)."""

    schools: dict[str, str] = field(default_factory=dict)  # school_id -> name
    placements: list[Placement] = field(default_factory=list)
    students: int = 0


def read_bundle(source: Path | bytes) -> dict[str, bytes]:
    """The bundle's CSV files by base name, from a zip (path or bytes) or a directory."""
    if isinstance(source, Path) and source.is_dir():
        return {n: (source / n).read_bytes() for n in FILES if (source / n).is_file()}
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _invalid("bundle", f"not a zip file or directory: {exc}") from None
    with archive:
        members = {PurePosixPath(i.filename).name: i for i in archive.infolist() if not i.is_dir()}
        wanted = [members[n] for n in FILES if n in members]
        if sum(i.file_size for i in wanted) > MAX_BUNDLE_BYTES:
            raise _invalid("bundle", f"CSV files larger than {MAX_BUNDLE_BYTES} bytes unpacked")
        return {PurePosixPath(i.filename).name: archive.read(i) for i in wanted}


def _invalid(file: str, problem: str) -> InvalidRoster:
    return InvalidRoster(
        "roster rejected; nothing recorded", [RosterProblem(file, 0, problem).as_dict()]
    )


class _Checker:
    """Collects problems across all files, so one run reports every bad row."""

    def __init__(self) -> None:
        self.problems: list[RosterProblem] = []

    def add(self, file: str, line: int, problem: str, column: str | None = None) -> None:
        self.problems.append(RosterProblem(file, line, problem, column))

    def table(self, name: str, data: bytes | None) -> list[Row]:
        if data is None:
            if name != "enrollments.csv":
                self.add(name, 0, "file missing from the bundle")
            return []
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.add(name, data[: exc.start].count(b"\n") + 1, "not UTF-8 text")
            return []
        records = _records(text)
        header_line, first = next(records, (1, []))
        header = [h.strip() for h in first or []]
        missing = [c for c in REQUIRED_COLUMNS[name] if c not in header]
        if missing:
            self.add(name, header_line, f"header lacks column(s) {', '.join(missing)}")
            return []
        rows = []
        for line, values in records:
            if values is None:
                self.add(name, line, "unreadable CSV record")
            elif len(values) != len(header):
                self.add(name, line, f"expected {len(header)} fields, found {len(values)}")
            else:
                rows.append((line, {k: v.strip() for k, v in zip(header, values, strict=True)}))
        return rows


def _records(text: str) -> Iterator[tuple[int, list[str] | None]]:
    """CSV records with the line each starts on (None: unreadable); blank lines skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            values: list[str] | None = next(reader)
        except StopIteration:
            return
        except csv.Error:
            values = None
        if values is None or values:
            yield start, values


def _deleted(row: dict[str, str]) -> bool:
    return row.get("status", "").lower() == "tobedeleted"


def _date(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


def parse_roster(files: dict[str, bytes], school_key: SchoolKey = "sourcedId") -> Roster:
    """Schools and placements of a bundle; InvalidRoster lists every bad row."""
    check = _Checker()
    orgs, schools = _orgs(check, check.table("orgs.csv", files.get("orgs.csv")), school_key)
    students = _users(check, check.table("users.csv", files.get("users.csv")), orgs)
    enrolments = check.table("enrollments.csv", files.get("enrollments.csv"))
    placements = _placements(check, enrolments, students, schools)
    if check.problems:
        listed = [p.as_dict() for p in check.problems[:MAX_LISTED_PROBLEMS]]
        raise InvalidRoster(
            f"roster rejected: {len(check.problems)} bad row(s); nothing recorded", listed
        )
    roster = Roster(students=sum(1 for s in students.values() if s is not None))
    roster.schools = dict(schools.values())
    roster.placements = placements
    return roster


def _orgs(
    check: _Checker, rows: list[Row], school_key: SchoolKey
) -> tuple[set[str], dict[str, tuple[str, str]]]:
    """All org ids, and each school org's (school_id, name) by sourcedId."""
    orgs: set[str] = set()
    schools: dict[str, tuple[str, str]] = {}
    for line, row in rows:
        if _deleted(row):
            continue
        sourced = row["sourcedId"]
        if not sourced or sourced in orgs:
            check.add("orgs.csv", line, "sourcedId empty or repeated", "sourcedId")
            continue
        orgs.add(sourced)
        if row["type"].lower() != "school":
            continue
        school_id, name = row.get(school_key, ""), row["name"]
        if not _SCHOOL_ID.fullmatch(school_id):
            check.add("orgs.csv", line, "school id must be 1-64 of [A-Za-z0-9_.-]", school_key)
        elif any(school_id == known for known, _ in schools.values()):
            check.add("orgs.csv", line, "school id repeated", school_key)
        elif not 1 <= len(name) <= 200:
            check.add("orgs.csv", line, "school name must be 1-200 characters", "name")
        else:
            schools[sourced] = (school_id, name)
    return orgs, schools


@dataclass(frozen=True)
class _Student:
    index: int
    grade: int | None
    orgs: tuple[str, ...]


def _grade(codes: str) -> int | None | str:
    """Highest K-12 grade listed (None: none in K-12), or the first unknown code."""
    found: list[int] = []
    for code in filter(None, (c.strip().upper() for c in codes.split(","))):
        if code in K12:
            found.append(K12[code])
        elif code not in OUTSIDE_K12:
            return code
    return max(found) if found else None


def _users(check: _Checker, rows: list[Row], orgs: set[str]) -> dict[str, _Student | None]:
    """Every user id (None for users who are not students) → the student's index and grade."""
    users: dict[str, _Student | None] = {}
    for line, row in rows:
        if _deleted(row):
            continue
        sourced = row["sourcedId"]
        if not sourced or sourced in users:
            check.add("users.csv", line, "sourcedId empty or repeated", "sourcedId")
            continue
        if row["role"].lower() != "student":
            users[sourced] = None
            continue
        grade = _grade(row["grades"])
        member_of = tuple(filter(None, (o.strip() for o in row["orgSourcedIds"].split(","))))
        if isinstance(grade, str):
            check.add("users.csv", line, f"grade {grade!r} is not a CEDS grade level", "grades")
        elif any(o not in orgs for o in member_of):
            check.add("users.csv", line, "names an org not in orgs.csv", "orgSourcedIds")
        else:
            users[sourced] = _Student(len(users), grade, member_of)
    return users


def _placements(
    check: _Checker,
    rows: list[Row],
    students: dict[str, _Student | None],
    schools: dict[str, tuple[str, str]],
) -> list[Placement]:
    """Dated placements from enrollments.csv; a student with none falls back to the schools
    among the user's orgSourcedIds, undated."""
    placements: list[Placement] = []
    placed: set[int] = set()
    for line, row in rows:
        if _deleted(row) or row["role"].lower() != "student":
            continue
        user, school = row["userSourcedId"], row["schoolSourcedId"]
        if user not in students:
            check.add("enrollments.csv", line, "user not in users.csv", "userSourcedId")
        elif school not in schools:
            check.add("enrollments.csv", line, "not a school in orgs.csv", "schoolSourcedId")
        elif (student := students[user]) is not None:
            try:
                begin, end = _date(row.get("beginDate", "")), _date(row.get("endDate", ""))
            except ValueError:
                check.add("enrollments.csv", line, "dates must be YYYY-MM-DD", "beginDate/endDate")
                continue
            if begin and end and begin > end:
                check.add("enrollments.csv", line, "beginDate is after endDate", "beginDate")
                continue
            placements.append(
                Placement(student.index, schools[school][0], student.grade, begin, end)
            )
            placed.add(student.index)
    for student in students.values():
        if student is not None and student.index not in placed:
            placements += [
                Placement(student.index, schools[o][0], student.grade)
                for o in student.orgs
                if o in schools
            ]
    return placements
