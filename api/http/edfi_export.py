"""The Ed-Fi export of a district's tutoring, shared by the admin route and `export-edfi`.

Completed sessions come from the read models at one ledger position; each student's id (the
Ed-Fi `studentUniqueId`) is read back from their first session's sealed request, so it is
personal data: the export needs a purpose and is recorded in the disclosure log before any
file is handed out. Erased students have no id any more and are left out (their sessions
still count in every figure, by token). Exporting the same range at the same position gives
the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tutorledger.api.http.disclose import disclose
from tutorledger.api.runtime import Runtime
from tutorledger.consumers.projector import decode
from tutorledger.domain.edfi import FILES, Attended, EdFiNotConfigured, encode, resources
from tutorledger.domain.errors import InvalidRequest
from tutorledger.infra.keys import Principal
from tutorledger.projections.alerts_students import tokens
from tutorledger.projections.dosage_standard import completed_sessions
from tutorledger.projections.filters import Filters

ENDPOINT = "GET /v1/exports/edfi"


@dataclass(frozen=True)
class Export:
    """The files of one export, and what made them."""

    district_id: str
    as_of_position: int
    head_hash: str | None
    files: dict[str, bytes]
    students: int
    attendance_events: int


def student_ids(runtime: Runtime, found: dict[str, str]) -> dict[str, str]:
    """Token → the district's student id, from one of the student's sealed requests (absent
    when the student was erased)."""
    ids: dict[str, str] = {}
    for token in sorted(set(found.values())):
        keys = runtime.store.sessions_of(token)
        if not keys:
            continue
        rows = runtime.store.chained_events(None, 0, 1, originator_id=keys[0])
        events = [decode(runtime.ledger, stored) for _, _, _, stored in rows]
        for opened in runtime.ledger.open_stored(events):
            student = opened.envelope.get("payload", {}).get("student_id")
            if isinstance(student, str) and student:
                ids[token] = student
    return ids


def export_edfi(
    runtime: Runtime,
    principal: Principal,
    purpose: str,
    filters: Filters,
    head_hash: str | None,
    endpoint: str = ENDPOINT,
) -> Export:
    """Build the files for the filters' district and range, recording the disclosure first."""
    if filters.date_from is None or filters.date_to is None:
        raise InvalidRequest("an Ed-Fi export needs both 'from' and 'to'")
    profile = runtime.settings.district(filters.district_id)
    if profile.edfi.education_organization_id is None:
        raise EdFiNotConfigured(
            "set edfi.education_organization_id for this district in the districts file",
            {"district_id": filters.district_id},
        )
    store = runtime.projections
    sessions = completed_sessions(store, filters)
    token_of = tokens(store, filters.district_id, [s for s, _, _, _ in sessions])
    id_of = student_ids(runtime, token_of)
    attended = [
        Attended(id_of[token_of[sid]], day, us)
        for sid, _, day, us in sessions
        if token_of.get(sid) in id_of
    ]
    built = resources(profile.edfi, profile.dosage_standard, filters.date_from, filters.date_to,
                      attended)  # fmt: skip
    students = sorted({token_of[sid] for sid, _, _, _ in sessions if token_of.get(sid) in id_of})
    resource = (
        f"from={filters.date_from} to={filters.date_to} as_of_position={filters.as_of_position}"
    )
    disclose(runtime, principal, purpose, filters.district_id, students, endpoint, resource)
    return Export(
        district_id=filters.district_id,
        as_of_position=filters.as_of_position,
        head_hash=head_hash,
        files={name: encode(built[name]) for name in FILES},
        students=len(students),
        attendance_events=len(built[FILES[2]]),
    )
