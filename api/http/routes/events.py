"""POST /v1/events: the emitters' write path."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from tutorledger.api.http.body_guard import parsed_body
from tutorledger.api.http.deps import Emitter, RuntimeDep, covered
from tutorledger.api.http.schemas import EventsResponse
from tutorledger.domain.batch import Outcome
from tutorledger.domain.errors import Forbidden, InvalidRequest
from tutorledger.domain.provenance import Provenance, by_key
from tutorledger.infra.keys import Principal

router = APIRouter(prefix="/v1/events", tags=["events"])
MAX_BATCH = 1000

_EXAMPLE = {
    "event_id": "0b6f8a52-5d1e-4a8e-9a57-6f0f2f0c1d11",
    "type": "session.requested",
    "schema_version": 1,
    "district_id": "clayton",
    "session_id": "s-1001",
    "occurred_at": "2026-03-02T16:05:00-05:00",
    "payload": {"school_id": "ms-12", "student_id": "st-8841", "grade": 7, "subject": "geometry"},
}


# What the route accepts, exactly: a batch object holding only `events` (at most MAX_BATCH
# items), or any other object, taken as one envelope. Envelopes are judged one by one
# (schema in the description), so a bad one is a `rejected` result, not a bad request.
BODY_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "required": ["events"],
            "properties": {"events": {"type": "array", "maxItems": MAX_BATCH, "items": {}}},
            "additionalProperties": False,
        },
        {"type": "object", "not": {"required": ["events"]}},
    ],
    "type": "object",
    "additionalProperties": True,
    "title": "Body",
}


def _events_of(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise InvalidRequest('the body must be a JSON object: one envelope or {"events": [...]}')
    if "events" in body:
        if set(body) != {"events"}:
            raise InvalidRequest("a batch body holds only 'events'", sorted(set(body) - {"events"}))
        events = body["events"]
        if not isinstance(events, list):
            raise InvalidRequest("'events' must be a list of envelopes")
        if len(events) > MAX_BATCH:
            raise InvalidRequest(f"at most {MAX_BATCH} events per request, got {len(events)}")
        return events
    return [body]


@router.post(
    "",
    response_model=EventsResponse,
    response_model_exclude_none=True,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": BODY_SCHEMA,
                    "examples": {"single": {"value": _EXAMPLE}},
                }
            },
        }
    },
    summary="Record one event or a batch",
    description=(
        'Body: one envelope (see docs/contract.md) or `{"events": [...]}` with at most 1000. Each '
        "event stands or falls alone; results come back in request order. Re-sending an "
        "`event_id` with the same body is reported `duplicate` and stored once; with a "
        "different body it is rejected with `event_id_conflict`. Rejection codes: "
        "`invalid_event`, `unknown_session`, `invalid_transition`, `timestamp_regression`, "
        "`already_recorded`, `event_id_conflict`. Every event's district must be covered by "
        "the key, else 403 and nothing is stored. Each accepted event is stored with its "
        "`provenance` (the key's id and provider), covered by the chain hash."
    ),
)
def post_events(runtime: RuntimeDep, principal: Emitter, request: Request) -> Response:
    # The body was parsed once, by the body guard (which also refuses duplicate keys); a
    # 1000-event batch parsed again here, and answered through 1000 response models, cost
    # a quarter of the request. The answer is the EventsResponse shape, written directly.
    events = _events_of(parsed_body(request))
    for raw in events:  # each event names its district in the body: no path/query dependency
        district = raw.get("district_id") if isinstance(raw, dict) else None
        if isinstance(district, str):
            covered(principal, district)
    outcomes = runtime.ledger.record_events(events, _provenance(principal))
    positions = [o.position for o in outcomes if o.position is not None]
    answer = {
        "results": [_result(o) for o in outcomes],
        "position": max(positions, default=None) or runtime.ledger_head(),
    }
    return Response(orjson.dumps(answer), media_type="application/json")


def _provenance(principal: Principal) -> Provenance:
    """Who posts this batch, as each accepted event's chained record names it."""
    try:
        return by_key(principal.key_id, principal.provider)
    except ValidationError:  # a provider the keys file allowed but a record cannot hold
        raise Forbidden(
            "this key's provider is not 1-64 of [A-Za-z0-9_.-]; fix it in the keys file"
        ) from None


def _result(outcome: Outcome) -> dict[str, Any]:
    """One EventResult, absent fields left out (as `response_model_exclude_none` would)."""
    result: dict[str, Any] = {"status": outcome.status}
    if outcome.event_id is not None:
        result["event_id"] = outcome.event_id
    if outcome.position is not None:
        result["position"] = outcome.position
    if outcome.error is not None:
        result["error"] = outcome.error.as_dict()
    return result
