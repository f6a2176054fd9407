"""OneRoster 1.1 CSV bundles (a zip or a directory): schools and student placements.

Reads `orgs.csv`, `users.csv` and, when present, `enrollments.csv`; every other file is
ignored. Everything is checked before anything is used, and every bad row is reported with
its file and line. Student identifiers, names, e-mails and birth dates stay inside this
module: students become indexes local to one parse, and problems never quote a cell.

Files are read as streams, one line at a time, never whole: memory does not grow with a
file's size or its compression ratio. A bundle past its budgets — unpacked bytes, CSV
records, one line's length — is refused (`RosterTooLarge`, 413) as soon as the budget is
spent; bad rows are reported up to MAX_LISTED_PROBLEMS, and reading stops there.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.domain.roster import InvalidRoster, Placement, RosterProblem, RosterTooLarge
from tutorledger.infra.settings import Settings

# The last two are read only by the student-group import (student_groups.py).
FILES = ("orgs.csv", "users.csv", "enrollments.csv", "demographics.csv", "students.csv")
REQUIRED_COLUMNS = {
    "orgs.csv": ("sourcedId", "name", "type"),
    "users.csv": ("sourcedId", "role", "grades", "orgSourcedIds"),
    "enrollments.csv": ("schoolSourcedId", "userSourcedId", "role"),
    "demographics.csv": ("sourcedId",),
    "students.csv": ("Student_id",),
}
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
MAX_BUNDLE_ROWS = 2_000_000
MAX_LINE_BYTES = 1024 * 1024
MAX_LISTED_PROBLEMS = 1000
SchoolKey = Literal["sourcedId", "identifier"]
# CEDS grade levels; K-12 count, the others (infants, pre-K, transitional K, ungraded,
# post-secondary, "Other") are recognised but outside the enrolment figures.
K12 = {"KG": 0, "K": 0, **{f"{g:02d}": g for g in range(1, 13)}, **{str(g): g for g in range(13)}}
OUTSIDE_K12 = {"IT", "PR", "PK", "TK", "PS", "13", "UG", "OTHER"}
_SCHOOL_ID = re.compile(DISTRICT_PATTERN)
# What a damaged or unreadable zip member raises while it is read.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)

Row = tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Limits:
    """What one bundle may cost: unpacked CSV bytes and CSV records (the three files
    together), the length of one line, and the bad rows listed before reading stops."""

    max_bytes: int = MAX_BUNDLE_BYTES
    max_rows: int = MAX_BUNDLE_ROWS
    max_line_bytes: int = MAX_LINE_BYTES
    max_problems: int = MAX_LISTED_PROBLEMS

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(max_bytes=settings.roster_max_bytes, max_rows=settings.roster_max_rows)


@dataclass
class Roster:
    """The schools a roster names and where its students are placed (no identities)."""

    schools: dict[str, str] = field(default_factory=dict)  # school_id -> name
    placements: list[Placement] = field(default_factory=list)
    students: int = 0


class Bundle:
    """The bundle's CSV files, each opened as a binary stream when it is read."""

    def __init__(self, opener: Callable[[str], IO[bytes] | None]) -> None:
        self._open = opener

    def open(self, name: str) -> IO[bytes] | None:
        """A stream of the file `name` (one of FILES), or None when the bundle lacks it."""
        return self._open(name)

    @classmethod
    def of(cls, files: Mapping[str, bytes]) -> Bundle:
        """A bundle held in memory (tests, small inputs)."""
        return cls(lambda name: io.BytesIO(files[name]) if name in files else None)


@contextmanager
def read_bundle(source: Path | bytes, limits: Limits = Limits()) -> Iterator[Bundle]:
    """The bundle of a zip (path or bytes) or a directory, open while the block runs."""
    if isinstance(source, Path) and source.is_dir():
        yield Bundle(lambda n: (source / n).open("rb") if (source / n).is_file() else None)
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _invalid("bundle", f"not a zip file or directory: {exc}") from None
    with archive:
        members = _members(archive)
        if sum(i.file_size for i in members.values()) > limits.max_bytes:
            raise RosterTooLarge(f"roster CSV files over {limits.max_bytes} bytes unpacked")
        yield Bundle(lambda n: archive.open(members[n]) if n in members else None)


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The zip's OneRoster files by base name; two members with one name are refused
    (`orgs.csv` beside `a/orgs.csv`: which one is the roster is anyone's guess)."""
    found: dict[str, list[zipfile.ZipInfo]] = {}
    for info in archive.infolist():
        name = PurePosixPath(info.filename).name
        if not info.is_dir() and name in FILES:
            found.setdefault(name, []).append(info)
    twice = {n: [i.filename for i in infos] for n, infos in found.items() if len(infos) > 1}
    if twice:
        problems = [
            RosterProblem(n, 0, f"the zip holds {len(paths)} files named {n}: keep one").as_dict()
            for n, paths in sorted(twice.items())
        ]
        raise InvalidRoster("roster rejected: a file appears twice; nothing recorded", problems)
    return {n: infos[0] for n, infos in found.items()}


def _invalid(file: str, problem: str) -> InvalidRoster:
    return InvalidRoster(
        "roster rejected; nothing recorded", [RosterProblem(file, 0, problem).as_dict()]
    )


class _Unreadable(Exception):
    """A file that cannot be read further: not UTF-8, a line too long, a damaged member."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line, self.problem = line, problem


class _Checker:
    """Collects problems across all files (up to the limit), so one run reports every bad
    row, and spends the bundle's byte and record budgets as files are read."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.problems: list[RosterProblem] = []
        self.bytes_left = limits.max_bytes
        self.rows_left = limits.max_rows

    def add(self, file: str, line: int, problem: str, column: str | None = None) -> None:
        self.problems.append(RosterProblem(file, line, problem, column))
        if len(self.problems) >= self.limits.max_problems:
            raise self.rejection(stopped=True)

    def rejection(self, stopped: bool = False) -> InvalidRoster:
        listed = [p.as_dict() for p in self.problems[: self.limits.max_problems]]
        count = f"at least {len(listed)}" if stopped else str(len(listed))
        tail = "reading stopped there; " if stopped else ""
        return InvalidRoster(f"roster rejected: {count} bad row(s); {tail}nothing recorded", listed)

    def table(
        self,
        bundle: Bundle,
        name: str,
        optional: bool = False,
        required: tuple[str, ...] | None = None,
    ) -> Iterator[Row]:
        """The file's rows with their lines, each of the header's width; bad ones reported
        (`required`: the columns the header must have, by default REQUIRED_COLUMNS')."""
        stream = bundle.open(name)
        if stream is None:
            if name != "enrollments.csv" and not optional:
                self.add(name, 0, "file missing from the bundle")
            return
        with closing(stream):
            try:
                columns = REQUIRED_COLUMNS[name] if required is None else required
                yield from self._rows(name, _records(self._lines(stream)), columns)
            except _Unreadable as exc:
                self.add(name, exc.line, exc.problem)

    def _rows(
        self, name: str, records: Iterator[tuple[int, list[str] | None]], required: tuple[str, ...]
    ) -> Iterator[Row]:
        header_line, first = next(records, (1, []))
        header = [h.strip() for h in first or []]
        missing = [c for c in required if c not in header]
        if missing:
            self.add(name, header_line, f"header lacks column(s) {', '.join(missing)}")
            return
        for line, values in records:
            self.rows_left -= 1
            if self.rows_left < 0:
                raise RosterTooLarge(f"roster over {self.limits.max_rows} CSV records")
            if values is None:
                self.add(name, line, "unreadable CSV record")
            elif len(values) != len(header):
                self.add(name, line, f"expected {len(header)} fields, found {len(values)}")
            else:
                yield line, {k: v.strip() for k, v in zip(header, values, strict=True)}

    def _lines(self, stream: IO[bytes]) -> Iterator[str]:
        """The file's lines as text, spending the byte budget; _Unreadable at a line that
        is not UTF-8, longer than the line limit, or cut short by a damaged zip member."""
        limit = self.limits.max_line_bytes
        number = 0
        while True:
            number += 1
            try:
                raw = stream.readline(limit + 1)
            except _ZIP_ERRORS:
                raise _Unreadable(number, "damaged in the zip; cannot be read") from None
            if not raw:
                return
            self.bytes_left -= len(raw)
            if self.bytes_left < 0:
                raise RosterTooLarge(f"roster CSV files over {self.limits.max_bytes} bytes")
            if len(raw) > limit:
                raise _Unreadable(number, f"line longer than {limit} bytes")
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise _Unreadable(number, "not UTF-8 text") from None


def _records(lines: Iterator[str]) -> Iterator[tuple[int, list[str] | None]]:
    """CSV records with the line each starts on (None: unreadable); blank lines skipped."""
    reader = csv.reader(lines, strict=True)
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


def parse_roster(
    bundle: Bundle | Mapping[str, bytes],
    school_key: SchoolKey = "sourcedId",
    limits: Limits = Limits(),
) -> Roster:
    """Schools and placements of a bundle; InvalidRoster lists the bad rows (up to the
    limit), RosterTooLarge when the bundle is over its budgets."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.of(bundle)
    check = _Checker(limits)
    orgs, schools = _orgs(check, check.table(bundle, "orgs.csv"), school_key)
    students = _users(check, check.table(bundle, "users.csv"), orgs)
    enrolments = check.table(bundle, "enrollments.csv")
    placements = _placements(check, enrolments, students, schools)
    if check.problems:
        raise check.rejection()
    roster = Roster(students=sum(1 for s in students.values() if s is not None))
    roster.schools = dict(schools.values())
    roster.placements = placements
    return roster


def _orgs(
    check: _Checker, rows: Iterator[Row], school_key: SchoolKey
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


def _users(check: _Checker, rows: Iterator[Row], orgs: set[str]) -> dict[str, _Student | None]:
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
            check.add("users.csv", line, "a grade is not a CEDS grade level", "grades")
        elif any(o not in orgs for o in member_of):
            check.add("users.csv", line, "names an org not in orgs.csv", "orgSourcedIds")
        else:
            users[sourced] = _Student(len(users), grade, member_of)
    return users


def _placements(
    check: _Checker,
    rows: Iterator[Row],
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
