"""GET /v1/audit/tutor-overlap: tutors running sessions at the same time (auditors, admins).

The figures name tutors (by the pseudonymous id their provider sends) and providers, never a
student. The evidence list names each overlapping session and its student's token, so it is
a personal-data read: it needs `X-Purpose` and is recorded in the disclosure log.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tutorledger.api.http.deps import AuditorIn, RuntimeDep
from tutorledger.api.http.disclose import PurposeHeader, disclose, require_purpose
from tutorledger.api.http.routes.metrics import AsOfQ, FromQ, ProviderQ, ToQ, resolve_filters
from tutorledger.api.runtime import Runtime
from tutorledger.projections import overlap
from tutorledger.projections.alerts_students import tokens
from tutorledger.projections.filters import Filters

router = APIRouter(prefix="/v1/audit", tags=["audit"])
DEFINITION = (
    "A completed session's interval runs from its `session.matched` to its "
    "`session.completed` instant, to the microsecond, half-open. Two sessions of the same "
    "tutor (`tutor_id` of the matched event) and provider *overlap* when each starts before "
    "the other ends: back-to-back sessions, one completed at the very instant the next was "
    "matched, do not. Per provider and tutor: `sessions` (completed, with a match, requested "
    "in range), `overlapping_sessions` (of those, overlapping another), `share` = "
    "overlapping ÷ sessions, `highest_concurrency` (most sessions in progress at one "
    "instant), and `weeks` (ISO weeks of the request's local date, with sessions and "
    "overlapping sessions). Example: sessions 10:00-10:30, 10:30-11:00 and 10:45-11:15 → "
    "the second and third overlap, the first does not; sessions 3, overlapping 2, share "
    "0.667, highest concurrency 2. Sessions projected before migration 0007 need "
    "`tutorledger rebuild` to take part. Filters: `provider`, `from`/`to` (local request "
    "dates), `as_of_position`."
)


class WeekOverlap(BaseModel):
    week: str = Field(description="ISO week, e.g. 2026-W10")
    sessions: int
    overlapping_sessions: int


class TutorRow(BaseModel):
    provider: str = Field(description="'' for sessions recorded without provenance")
    tutor_id: str
    sessions: int
    overlapping_sessions: int
    share: float | None
    highest_concurrency: int
    weeks: list[WeekOverlap]


class ProviderRow(BaseModel):
    provider: str
    tutors: int
    tutors_with_overlap: int
    sessions: int
    overlapping_sessions: int
    share: float | None


class TutorOverlapOut(BaseModel):
    district_id: str
    as_of_position: int
    head_hash: str | None
    filters: dict[str, str | None]
    providers: list[ProviderRow]
    tutors: list[TutorRow] = Field(description="Every tutor with a completed session")


class OverlapSession(BaseModel):
    provider: str
    tutor_id: str
    session_id: str
    student_token: str
    matched_at: str
    completed_at: str
    week: str
    overlaps_with: list[str] = Field(description="The tutor's sessions this one overlaps")


class OverlapEvidence(BaseModel):
    district_id: str
    as_of_position: int
    head_hash: str | None
    filters: dict[str, str | None]
    sessions: list[OverlapSession]


def _filters(
    runtime: Runtime,
    district_id: str,
    provider: str | None,
    date_from: date | None,
    date_to: date | None,
    as_of: int | None,
) -> tuple[Filters, str | None]:
    filters, head, _ = resolve_filters(
        runtime, district_id, None, None, None, date_from, date_to, as_of
    )
    return replace(filters, provider=provider), head


def _echo(filters: Filters) -> dict[str, str | None]:
    return {
        "provider": filters.provider,
        "from": filters.date_from.isoformat() if filters.date_from else None,
        "to": filters.date_to.isoformat() if filters.date_to else None,
        "time_zone": filters.tz,
    }


def providers(tutors: list[overlap.TutorOverlap]) -> list[ProviderRow]:
    """The tutors' figures summed per provider."""
    rows: dict[str, list[int]] = {}
    for t in tutors:
        row = rows.setdefault(t.provider, [0, 0, 0, 0])
        for i, n in enumerate((1, int(t.overlapping > 0), t.sessions, t.overlapping)):
            row[i] += n
    return [
        ProviderRow(
            provider=p,
            tutors=a,
            tutors_with_overlap=b,
            sessions=n,
            overlapping_sessions=o,
            share=o / n if n else None,
        )  # fmt: skip
        for p, (a, b, n, o) in sorted(rows.items())
    ]


@router.get(
    "/tutor-overlap",
    response_model=TutorOverlapOut,
    summary="Tutor-overlap audit: sessions a tutor ran at the same time",
    description=DEFINITION + " Auditors and admins.",
)
def get_tutor_overlap(
    runtime: RuntimeDep,
    caller: AuditorIn,
    provider: ProviderQ = None,
    date_from: FromQ = None,
    date_to: ToQ = None,
    as_of_position: AsOfQ = None,
) -> TutorOverlapOut:
    filters, head = _filters(
        runtime, caller.district_id, provider, date_from, date_to, as_of_position
    )
    tutors = overlap.tutor_overlap(runtime.projections, filters)
    return TutorOverlapOut(
        district_id=filters.district_id,
        as_of_position=filters.as_of_position,
        head_hash=head,
        filters=_echo(filters),
        providers=providers(tutors),
        tutors=[TutorRow.model_validate(t.as_dict()) for t in tutors],
    )


@router.get(
    "/tutor-overlap/sessions",
    response_model=OverlapEvidence,
    summary="Tutor-overlap evidence: each overlapping session",
    description=(
        "Every session of the tutor-overlap audit that overlaps another of its tutor's, with "
        "its interval, its student's token and the sessions it overlaps (definitions and "
        "filters as for `/v1/audit/tutor-overlap`). Auditors and admins; names students by "
        "token: send `X-Purpose`; each read is recorded in the disclosure log."
    ),
)
def get_tutor_overlap_sessions(
    runtime: RuntimeDep,
    caller: AuditorIn,
    provider: ProviderQ = None,
    date_from: FromQ = None,
    date_to: ToQ = None,
    as_of_position: AsOfQ = None,
    x_purpose: PurposeHeader = None,
) -> OverlapEvidence:
    principal, district_id = caller.principal, caller.district_id
    purpose = require_purpose(x_purpose)
    filters, head = _filters(runtime, district_id, provider, date_from, date_to, as_of_position)
    store = runtime.projections
    found = overlap.intervals(store, filters)
    rows = overlap.evidence(found, overlap.audit(found))
    token_of = tokens(store, district_id, [r["session_id"] for r in rows]) if rows else {}
    sessions = [OverlapSession(**r, student_token=token_of.get(r["session_id"], "")) for r in rows]
    resource = f"as_of_position={filters.as_of_position} provider={filters.provider or ''}"
    disclose(
        runtime, principal, purpose, district_id, set(token_of.values()),
        "GET /v1/audit/tutor-overlap/sessions", resource,
    )  # fmt: skip
    return OverlapEvidence(
        district_id=district_id,
        as_of_position=filters.as_of_position,
        head_hash=head,
        filters=_echo(filters),
        sessions=sessions,
    )
