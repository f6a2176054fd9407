"""GET /v1/sessions/...: one session's state and its full, hash-chained history.

Both answers carry a student's personal data, so both need an `X-Purpose` header and are
recorded in the disclosure log before they are sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path

from tutorledger.api.http.deps import AuditorIn, RuntimeDep
from tutorledger.api.http.disclose import PurposeHeader, disclose, require_purpose
from tutorledger.api.http.schemas import HistoryItem, SessionHistory, SessionView, Survey
from tutorledger.consumers.projector import decode
from tutorledger.domain.envelope import SESSION_PATTERN, EventType
from tutorledger.domain.errors import NotFound
from tutorledger.domain.privacy import token_of
from tutorledger.domain.provenance import provenance_of
from tutorledger.domain.session import session_key

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
SessionPath = Annotated[str, Path(pattern=SESSION_PATTERN, description="[A-Za-z0-9_.:-]{1,128}")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such session"}}
PURPOSE_NOTE = (
    " Carries the student's personal data: send `X-Purpose`; each read is recorded in the "
    "disclosure log (`GET /v1/privacy/disclosures`)."
)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@router.get(
    "/{district_id}/{session_id}",
    response_model=SessionView,
    responses=NOT_FOUND,
    description="The session's current state." + PURPOSE_NOTE,
)
def get_session(
    caller: AuditorIn,
    session_id: SessionPath,
    runtime: RuntimeDep,
    x_purpose: PurposeHeader = None,
) -> SessionView:
    principal, district_id = caller.principal, caller.district_id
    purpose = require_purpose(x_purpose)
    session = runtime.ledger.get_session(district_id, session_id)
    if session is None:
        raise NotFound(f"no session '{session_id}' in district '{district_id}'")
    opened = runtime.ledger.open_stored(session.stored_events())
    payloads = {EventType(o.envelope["type"]): o.envelope["payload"] for o in opened}
    erased = sorted({f for o in opened for f in o.erased})
    disclose(
        runtime, principal, purpose, district_id, [session.student_token],
        "GET /v1/sessions/{district_id}/{session_id}", session_id,
    )  # fmt: skip
    at = session.steps.get
    survey = payloads.get(EventType.SURVEYED)
    requested = payloads[EventType.REQUESTED]
    return SessionView(
        district_id=district_id,
        session_id=session_id,
        status=session.status,
        school_id=session.school_id,
        student_id=requested.get("student_id"),
        student_token=session.student_token,
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
        erased=erased,
    )


@router.get(
    "/{district_id}/{session_id}/events",
    response_model=SessionHistory,
    responses=NOT_FOUND,
    description="The session's history in ledger order, each event as stored (and chained) "
    "and decrypted, with its provenance (who recorded it)." + PURPOSE_NOTE,
)
def get_session_events(
    caller: AuditorIn,
    session_id: SessionPath,
    runtime: RuntimeDep,
    x_purpose: PurposeHeader = None,
) -> SessionHistory:
    principal, district_id = caller.principal, caller.district_id
    purpose = require_purpose(x_purpose)
    rows = runtime.store.chained_events(
        None, 0, 1000, originator_id=session_key(district_id, session_id)
    )
    if not rows:
        raise NotFound(f"no session '{session_id}' in district '{district_id}'")
    events = [decode(runtime.ledger, stored) for _, _, _, stored in rows]
    opened = runtime.ledger.open_stored(events)
    tokens = {t for e in events if (t := token_of(e)) is not None}
    disclose(
        runtime, principal, purpose, district_id, tokens,
        "GET /v1/sessions/{district_id}/{session_id}/events", session_id,
    )  # fmt: skip
    return SessionHistory(
        district_id=district_id,
        session_id=session_id,
        events=[
            HistoryItem(
                position=position,
                hash=chain,
                event=event,
                decrypted=o.envelope,
                erased=list(o.erased),
                provenance=provenance_of(event) or None,
            )
            for (position, _, chain, _), event, o in zip(rows, events, opened, strict=True)
        ],
    )
