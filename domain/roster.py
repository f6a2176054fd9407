"""Enrolment from a roster: which students count, at which school and grade, on a date.

The rule, in one place: a student counts once on a date, at one school. Among the student's
placements active that day (begin <= date <= end, open ends allowed) the one that began
latest wins: a student who moved keeps an old, never-closed enrolment in many rosters, and
the newer school is where they are. Equal begin dates: the smallest school id, so the
answer never depends on file order. Students outside grades K-12 are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from tutorledger.domain.errors import TutorLedgerError

_NO_BEGIN = date.min


@dataclass(frozen=True)
class Placement:
    """A student at a school for a span of dates; `student` is an index local to one import,
    never the roster's identifier, and `grade` None means outside K-12."""

    student: int
    school_id: str
    grade: int | None
    begin: date | None = None
    end: date | None = None

    def active_on(self, day: date) -> bool:
        return (self.begin is None or self.begin <= day) and (self.end is None or day <= self.end)


@dataclass
class Enrolment:
    """Students by school and grade on one date, and how many students the rule set aside."""

    by_school: dict[str, dict[str, int]] = field(default_factory=dict)
    students: int = 0
    in_several_schools: int = 0
    outside_k12: int = 0


def _better(candidate: Placement, current: Placement) -> bool:
    new, old = candidate.begin or _NO_BEGIN, current.begin or _NO_BEGIN
    return new > old or (new == old and candidate.school_id < current.school_id)


def enrolment_on(placements: Iterable[Placement], day: date) -> Enrolment:
    """Count each student once on `day` (see the module docstring for the rule)."""
    chosen: dict[int, Placement] = {}
    schools_of: dict[int, set[str]] = {}
    for p in placements:
        if not p.active_on(day):
            continue
        schools_of.setdefault(p.student, set()).add(p.school_id)
        current = chosen.get(p.student)
        if current is None or _better(p, current):
            chosen[p.student] = p
    result = Enrolment()
    for student, p in chosen.items():
        if len(schools_of[student]) > 1:
            result.in_several_schools += 1
        if p.grade is None:
            result.outside_k12 += 1
            continue
        grades = result.by_school.setdefault(p.school_id, {})
        grades[str(p.grade)] = grades.get(str(p.grade), 0) + 1
        result.students += 1
    return result


@dataclass(frozen=True)
class RosterProblem:
    """One bad row of a roster file. Never holds a value from the row: rows name people."""

    file: str
    line: int
    problem: str
    column: str | None = None

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"file": self.file, "line": self.line, "problem": self.problem}
        if self.column is not None:
            body["column"] = self.column
        return body


class InvalidRoster(TutorLedgerError):
    """The roster has bad rows; nothing was recorded. `details` lists them with line numbers."""

    code = "invalid_roster"
    status = 422


class RosterTooLarge(TutorLedgerError):
    """The roster is over a size budget (unpacked bytes or records); nothing was recorded."""

    code = "roster_too_large"
    status = 413
