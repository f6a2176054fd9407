"""GET /v1/sessions/...: one session's state and its full, hash-chained history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path

from tutorledger.api.deps import Auditor, RuntimeDep, check_district
from tutorledger.api.schemas import HistoryItem, SessionHistory, SessionView, Survey
from tutorledger.consumers.projector import decode
from tutorledger.domain.envelope import DISTRICT_PATTERN, SESSION_PATTERN, EventType
from tutorledger.domain.errors import NotFound
from tutorledger.domain.session import session_key

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
DistrictPath = Annotated[str, Path(pattern=DISTRICT_PATTERN, description="[A-Za-z0-9_.-]{1,64}")]
SessionPath = Annotated[str, Path(pattern=SESSION_PATTERN, description="[A-Za-z0-9_.:-]{1,128}")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such session"}}


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@router.get("/{district_id}/{session_id}", response_model=SessionView, responses=NOT_FOUND)
def get_session(
    district_id: DistrictPath, session_id: SessionPath, runtime: RuntimeDep, principal: Auditor
) -> SessionView:
    check_district(principal, district_id)
    session = runtime.ledger.get_session(district_id, session_id)
    if session is None:
        raise NotFound(f"no session '{session_id}' in district '{district_id}'")
    at = session.steps.get
    payloads: dict[EventType, dict[str, Any]] = session.payloads
    survey = payloads.get(EventType.SURVEYED)
    requested = payloads[EventType.REQUESTED]
    return SessionView(
        district_id=district_id,
        session_id=session_id,
        status=session.status,
        school_id=session.school_id,
        student_id=session.student_id,
        grade=session.grade,
        subject=session.subject,
        topic=requested.get("topic"),
        tutor_id=payloads.get(EventType.MATCHED, {}).get("tutor_id"),
        requested_at=_iso(at(EventType.REQUESTED)) or "",
        matched_at=_iso(at(EventType.MATCHED)),
        completed_at=_iso(at(EventType.COMPLETED)),
        surveyed_at=_iso(at(EventType.SURVEYED)),
        cancelled_at=_iso(at(EventType.CANCELLED)),
        cancel_reason=payloads.get(EventType.CANCELLED, {}).get("reason"),
        outcome=payloads.get(EventType.COMPLETED, {}).get("outcome"),
        wait_seconds=_seconds(at(EventType.REQUESTED), at(EventType.MATCHED)),
        duration_seconds=_seconds(at(EventType.MATCHED), at(EventType.COMPLETED)),
        survey=Survey(**survey) if survey else None,
    )


@router.get(
    "/{district_id}/{session_id}/events", response_model=SessionHistory, responses=NOT_FOUND
)
def get_session_events(
    district_id: DistrictPath, session_id: SessionPath, runtime: RuntimeDep, principal: Auditor
) -> SessionHistory:
    check_district(principal, district_id)
    recorder: Any = runtime.ledger.recorder
    rows = recorder.chained_events(
        None, 0, 1000, originator_id=session_key(district_id, session_id)
    )
    if not rows:
        raise NotFound(f"no session '{session_id}' in district '{district_id}'")
    return SessionHistory(
        district_id=district_id,
        session_id=session_id,
        events=[
            HistoryItem(position=position, hash=chain, event=decode(runtime.ledger, stored))
            for position, _, chain, stored in rows
        ],
    )
