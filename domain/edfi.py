"""Tutoring as an Ed-Fi Data Standard v5 intervention, in the Ed-Fi API's resource shapes.

One `Intervention` for the district's tutoring programme (its prescribed dosage from the
district's standard), one `StudentInterventionAssociation` per student served, and one
`StudentInterventionAttendanceEvent` per completed session (`eventDate` its local request
date, `attendanceEventCategoryDescriptor` "In Attendance", `interventionDuration` its whole
minutes, rounded down) — except that Ed-Fi keys an attendance event by category, date,
intervention and student, so a student's sessions on one day are one event with their summed
length. Descriptors are URIs (`<namespace>/<Descriptor>#<code value>`). Everything is sorted and has
no timestamp of its own, so the same sessions always give the same bytes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from tutorledger.domain.dosage_standard import US_PER_MINUTE, DosageStandard, EdFi
from tutorledger.domain.errors import TutorLedgerError

FILES = (
    "interventions.json",
    "studentInterventionAssociations.json",
    "studentInterventionAttendanceEvents.json",
)
IN_ATTENDANCE = "In Attendance"
INTERVENTION_CLASS = "Supplement"  # tutoring supplements classroom instruction
DELIVERY_METHOD = "Individual"


class EdFiNotConfigured(TutorLedgerError):
    """The district has no Ed-Fi identity (`edfi.education_organization_id`) to export under."""

    code = "edfi_not_configured"
    status = 409


@dataclass(frozen=True)
class Attended:
    """One completed session of a student, as the export needs it."""

    student_unique_id: str
    event_date: date
    length_us: int


def descriptor(namespace: str, name: str, code: str) -> str:
    """A descriptor URI, e.g. uri://ed-fi.org/AttendanceEventCategoryDescriptor#In Attendance."""
    return f"{namespace}/{name}#{code}"


def resources(
    edfi: EdFi,
    standard: DosageStandard,
    begin: date,
    end: date,
    attended: Iterable[Attended],
) -> dict[str, list[dict[str, Any]]]:
    """The three resource collections, by file name; `begin`/`end` bound the intervention."""
    if edfi.education_organization_id is None:
        raise EdFiNotConfigured("edfi.education_organization_id is not set for this district")
    org = {"educationOrganizationId": edfi.education_organization_id}
    intervention_ref = {**org, "interventionIdentificationCode": edfi.intervention_code}
    ns = edfi.descriptor_namespace
    prescribed = standard.sessions_per_week * standard.session_minutes * standard.weeks
    intervention = {
        "interventionIdentificationCode": edfi.intervention_code,
        "educationOrganizationReference": org,
        "interventionClassDescriptor": descriptor(
            ns, "InterventionClassDescriptor", INTERVENTION_CLASS
        ),
        "deliveryMethodDescriptor": descriptor(ns, "DeliveryMethodDescriptor", DELIVERY_METHOD),
        "beginDate": begin.isoformat(),
        "endDate": end.isoformat(),
        "minDosage": prescribed,
    }
    by_student: dict[str, list[Attended]] = defaultdict(list)
    for a in attended:
        by_student[a.student_unique_id].append(a)
    associations = [
        {
            "interventionReference": intervention_ref,
            "studentReference": {"studentUniqueId": student},
            "dosage": prescribed,
        }
        for student in sorted(by_student)
    ]
    category = descriptor(ns, "AttendanceEventCategoryDescriptor", IN_ATTENDANCE)
    events = [
        {
            "attendanceEventCategoryDescriptor": category,
            "eventDate": day.isoformat(),
            "interventionReference": intervention_ref,
            "studentReference": {"studentUniqueId": student},
            "interventionDuration": minutes,
        }
        for student, day, minutes in _per_day(by_student)
    ]
    return dict(zip(FILES, ([intervention], associations, events), strict=True))


def _per_day(by_student: dict[str, list[Attended]]) -> list[tuple[str, date, int]]:
    """One event per (student, date): the day's sessions, their lengths summed, in whole
    minutes rounded down."""
    days: dict[tuple[str, date], int] = defaultdict(int)
    for student, sessions in by_student.items():
        for a in sessions:
            days[(student, a.event_date)] += a.length_us
    return [(s, d, us // US_PER_MINUTE) for (s, d), us in sorted(days.items())]


def encode(collection: list[dict[str, Any]]) -> bytes:
    """A file's bytes: sorted keys, two-space indent, a final newline."""
    return (json.dumps(collection, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
