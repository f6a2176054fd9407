"""Roster import: a OneRoster bundle becomes each school's enrolment on a date, recorded
with the same school events `PUT /v1/schools` records, all schools in one transaction.

Only counts reach the ledger. Importing the same bundle for the same date again records
nothing (a school whose enrolment on that date is already the roster's is left alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, Protocol

from tutorledger.domain.roster import enrolment_on
from tutorledger.domain.school import School
from tutorledger.infra.importers.oneroster import Limits, SchoolKey, parse_roster, read_bundle


class SchoolLedger(Protocol):
    """What the roster import needs of the ledger."""

    def get_school(self, district_id: str, school_id: str) -> School | None: ...

    def put_schools(
        self, district_id: str, updates: Sequence[tuple[str, str, dict[str, int]]], as_of: date
    ) -> dict[str, int]: ...


@dataclass(frozen=True)
class SchoolResult:
    school_id: str
    name: str
    enrolled: int
    status: Literal["recorded", "unchanged"]
    position: int | None


@dataclass
class RosterImport:
    """What an import did; counts only, never a student."""

    district_id: str
    as_of: date
    students_in_roster: int
    students_counted: int
    in_several_schools: int
    outside_k12: int
    schools: list[SchoolResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["as_of"] = self.as_of.isoformat()
        return body


def _unchanged(school: School | None, name: str, enrollment: dict[str, int], day: date) -> bool:
    """The school's latest record for `day` already says exactly this."""
    if school is None:
        return False
    same_day = [h for h in school.history if h["as_of"] == day.isoformat()]
    return bool(same_day) and same_day[-1] == {
        "name": name,
        "enrollment": enrollment,
        "as_of": day.isoformat(),
    }


def import_roster(
    ledger: SchoolLedger,
    source: Path | bytes,
    district_id: str,
    as_of: date,
    school_key: SchoolKey = "sourcedId",
    limits: Limits = Limits(),
) -> RosterImport:
    """Validate the whole bundle (InvalidRoster lists its bad rows; RosterTooLarge past
    `limits`), then record."""
    with read_bundle(source, limits) as bundle:
        roster = parse_roster(bundle, school_key, limits)
    enrolment = enrolment_on(roster.placements, as_of)
    result = RosterImport(
        district_id,
        as_of,
        roster.students,
        enrolment.students,
        enrolment.in_several_schools,
        enrolment.outside_k12,
    )
    updates: list[tuple[str, str, dict[str, int]]] = []
    for school_id, name in sorted(roster.schools.items()):
        counts = dict(
            sorted(enrolment.by_school.get(school_id, {}).items(), key=lambda g: int(g[0]))
        )
        if not _unchanged(ledger.get_school(district_id, school_id), name, counts, as_of):
            updates.append((school_id, name, counts))
    positions = ledger.put_schools(district_id, updates, as_of)
    for school_id, name in sorted(roster.schools.items()):
        total = sum(enrolment.by_school.get(school_id, {}).values())
        position = positions.get(school_id)
        status: Literal["recorded", "unchanged"] = "unchanged" if position is None else "recorded"
        result.schools.append(SchoolResult(school_id, name, total, status, position))
    return result
