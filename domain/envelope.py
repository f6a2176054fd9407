"""The event envelope (docs/contract.md §1): what emitters send and what the stream carries."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

DISTRICT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
SESSION_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
SCHEMA_VERSION = 1

DistrictId = Annotated[str, Field(pattern=DISTRICT_PATTERN)]
SchoolId = Annotated[str, Field(pattern=DISTRICT_PATTERN)]
SessionId = Annotated[str, Field(pattern=SESSION_PATTERN)]
# Pseudonymous ids share the session charset: no spaces or '@', so no names or e-mails.
PersonId = Annotated[str, Field(pattern=SESSION_PATTERN)]


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Subject = Annotated[str, BeforeValidator(_lower), Field(pattern=r"^[a-z0-9-]{1,64}$")]
# Free text a person wrote: any character but C0/C1 controls (tab and newlines allowed).
# NUL in particular cannot be stored by PostgreSQL, and the rest only serve to hide text.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"


def text(max_length: int) -> Any:
    return Field(max_length=max_length, pattern=TEXT_PATTERN)


# Instants must fit ClickHouse's DateTime and precede any sane clock skew; the bounds are
# fixed (no clock read), so re-validating a stored event always gives the same answer.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class EventType(StrEnum):
    REQUESTED = "session.requested"
    MATCHED = "session.matched"
    COMPLETED = "session.completed"
    SURVEYED = "session.surveyed"
    CANCELLED = "session.cancelled"


V = TypeVar("V")


def per_kind(table: Mapping[EventType, V], what: str) -> Mapping[EventType, V]:
    """`table`, read-only, once it holds every session kind: a table keyed by kind that
    misses one (a kind added to EventType later) fails at import instead of silently
    dropping that kind's events."""
    missing = [kind.value for kind in EventType if kind not in table]
    if missing:
        raise RuntimeError(f"{what} has no entry for {', '.join(missing)}")
    return MappingProxyType(dict(table))


# Shared by the stored and the published forms (domain/published.py): one rule each.
GradeLevel = Annotated[int, Field(ge=0, le=12, strict=True)]
Helped = Annotated[bool, Field(strict=True)]
Rating = Annotated[int, Field(ge=1, le=5, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestedPayload(_Strict):
    school_id: SchoolId
    student_id: PersonId
    grade: GradeLevel
    subject: Subject
    topic: Annotated[str, text(200)] | None = None
    requested_tutor_id: PersonId | None = None


class MatchedPayload(_Strict):
    tutor_id: PersonId


class CompletedPayload(_Strict):
    outcome: Literal["resolved", "partial", "unresolved"] | None = None


class SurveyedPayload(_Strict):
    helped: Helped
    rating: Rating
    comment: Annotated[str, text(2000)] | None = None


class CancelledPayload(_Strict):
    reason: Literal["student_left", "no_tutor_available", "timeout", "other"]


def _exact_int(value: Any) -> Any:
    """JSON true and 1.0 are not the integer 1."""
    if type(value) is not int:
        raise ValueError("schema_version must be the integer 1")
    return value


def _rfc3339_only(value: Any) -> Any:
    """Refuse epoch numbers: the contract asks for an RFC 3339 timestamp with an offset."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        raise ValueError("occurred_at must be an RFC 3339 timestamp with an offset")
    if not isinstance(value, str | datetime):
        raise ValueError("occurred_at must be an RFC 3339 timestamp with an offset")
    return value


def _instant(value: Any, parse: ValidatorFunctionWrapHandler) -> datetime:
    """An RFC 3339 timestamp with an offset (no epoch numbers), within the bounds, in UTC:
    instants are stored in UTC; local views use the district's zone, not the sender's.
    (One wrap validator rather than a before and an after one: it runs for every event.)"""
    at: datetime = parse(_rfc3339_only(value))
    if not EARLIEST <= at < LATEST:
        raise ValueError(f"occurred_at must be from {EARLIEST:%Y} up to {LATEST:%Y} (UTC)")
    return at.astimezone(UTC)


class _Envelope(_Strict):
    event_id: UUID
    schema_version: Annotated[Literal[1], BeforeValidator(_exact_int)]
    district_id: DistrictId
    session_id: SessionId
    occurred_at: Annotated[AwareDatetime, WrapValidator(_instant)]

    def canonical(self) -> dict[str, Any]:
        """The JSON form we store, hash and publish (absent optional fields omitted)."""
        # One dump: the payload is the only place a None can be (every top-level field is
        # required), so exclude_none reaches exactly the payload's absent optional fields.
        body: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        return body


class RequestedEnvelope(_Envelope):
    type: Literal[EventType.REQUESTED]
    payload: RequestedPayload


class MatchedEnvelope(_Envelope):
    type: Literal[EventType.MATCHED]
    payload: MatchedPayload


class CompletedEnvelope(_Envelope):
    type: Literal[EventType.COMPLETED]
    payload: CompletedPayload


class SurveyedEnvelope(_Envelope):
    type: Literal[EventType.SURVEYED]
    payload: SurveyedPayload


class CancelledEnvelope(_Envelope):
    type: Literal[EventType.CANCELLED]
    payload: CancelledPayload


Envelope = Annotated[
    RequestedEnvelope | MatchedEnvelope | CompletedEnvelope | SurveyedEnvelope | CancelledEnvelope,
    Field(discriminator="type"),
]
ENVELOPE_ADAPTER: TypeAdapter[Envelope] = TypeAdapter(Envelope)


ENVELOPES_ADAPTER: TypeAdapter[list[Envelope]] = TypeAdapter(list[Envelope])


def parse_envelopes(raws: Sequence[Any]) -> list[Envelope] | None:
    """Validate a whole batch of raw envelopes (dicts) in one call, or None when any of them
    is not valid (then `parse_envelope` judges each, so each gets its own errors). One call
    for the batch saves a quarter of validation's cost against one call per envelope."""
    if not all(type(raw) is dict for raw in raws):
        return None
    try:
        return ENVELOPES_ADAPTER.validate_python(raws)
    except ValidationError:
        return None


def canonical_forms(envelopes: Sequence[Envelope]) -> list[dict[str, Any]]:
    """`canonical()` of each envelope, from one serializer call for the whole batch (half
    the cost of one call per envelope; the same dicts, keys in the same order)."""
    forms: list[dict[str, Any]] = ENVELOPES_ADAPTER.dump_python(
        list(envelopes), mode="json", exclude_none=True
    )
    return forms


def parse_envelope(raw: Any) -> Envelope:
    """Validate one raw envelope (dict or JSON bytes); raises pydantic.ValidationError."""
    if isinstance(raw, str | bytes):
        return ENVELOPE_ADAPTER.validate_json(raw)
    return ENVELOPE_ADAPTER.validate_python(raw)


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: keys sorted, no whitespace, UTF-8 — what hashes are taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body_digest(canonical: dict[str, Any]) -> bytes:
    """Digest that decides whether a re-sent event_id carries the same body."""
    return hashlib.sha256(canonical_json(canonical)).digest()
