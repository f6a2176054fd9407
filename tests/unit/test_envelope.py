"""Every validation rule of the envelope and payloads (docs/contract.md §1), one per case."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from tutorledger.domain.envelope import (
    CompletedPayload,
    EventType,
    RequestedEnvelope,
    canonical_json,
    parse_envelope,
)

EVENT_ID = "6f1c2b7e-3d4a-4e5f-9a0b-1c2d3e4f5a6b"

PAYLOADS: dict[str, dict[str, Any]] = {
    "session.requested": {
        "school_id": "school-1",
        "student_id": "stu-42",
        "grade": 4,
        "subject": "math",
    },
    "session.matched": {"tutor_id": "tutor-7"},
    "session.completed": {"outcome": "resolved"},
    "session.surveyed": {"helped": True, "rating": 4},
    "session.cancelled": {"reason": "timeout"},
}


def envelope(type_: str = "session.requested", **fields: Any) -> dict[str, Any]:
    """A valid envelope of `type_`; keyword arguments replace top-level fields."""
    body: dict[str, Any] = {
        "event_id": EVENT_ID,
        "type": type_,
        "schema_version": 1,
        "district_id": "district-1",
        "session_id": "sess-1",
        "occurred_at": "2026-03-02T15:00:00Z",
        "payload": copy.deepcopy(PAYLOADS[type_]),
    }
    body.update(fields)
    return body


def with_payload(type_: str, **fields: Any) -> dict[str, Any]:
    """A valid envelope of `type_` whose payload fields are replaced by `fields`."""
    body = envelope(type_)
    body["payload"].update(fields)
    return body


def without(body: dict[str, Any], field: str, in_payload: bool = False) -> dict[str, Any]:
    target = body["payload"] if in_payload else body
    del target[field]
    return body


def accepted(body: Any) -> Any:
    return parse_envelope(body)


def rejected(body: Any) -> None:
    with pytest.raises(ValidationError):
        parse_envelope(body)


# --- the baseline: one valid envelope of each type, as dict and as JSON bytes ---------------


@pytest.mark.parametrize("type_", list(PAYLOADS))
def test_valid_envelope_of_each_type_is_accepted(type_: str) -> None:
    env = accepted(envelope(type_))
    assert env.type is EventType(type_)
    assert accepted(json.dumps(envelope(type_)).encode()) == env


def test_event_types_are_exactly_the_contract_ones() -> None:
    assert {t.value for t in EventType} == set(PAYLOADS)


# --- required fields -------------------------------------------------------------------------

TOP_LEVEL = [
    "event_id",
    "type",
    "schema_version",
    "district_id",
    "session_id",
    "occurred_at",
    "payload",
]


@pytest.mark.parametrize("type_", list(PAYLOADS))
@pytest.mark.parametrize("field", TOP_LEVEL)
def test_missing_top_level_field_is_rejected(type_: str, field: str) -> None:
    rejected(without(envelope(type_), field))


REQUIRED_PAYLOAD_FIELDS = [
    ("session.requested", "school_id"),
    ("session.requested", "student_id"),
    ("session.requested", "grade"),
    ("session.requested", "subject"),
    ("session.matched", "tutor_id"),
    ("session.surveyed", "helped"),
    ("session.surveyed", "rating"),
    ("session.cancelled", "reason"),
]


@pytest.mark.parametrize(("type_", "field"), REQUIRED_PAYLOAD_FIELDS)
def test_missing_payload_field_is_rejected(type_: str, field: str) -> None:
    rejected(without(envelope(type_), field, in_payload=True))


@pytest.mark.parametrize(
    ("type_", "field"),
    [
        ("session.requested", "topic"),
        ("session.requested", "requested_tutor_id"),
        ("session.completed", "outcome"),
        ("session.surveyed", "comment"),
    ],
)
def test_optional_payload_field_may_be_absent(type_: str, field: str) -> None:
    body = envelope(type_)
    body["payload"].pop(field, None)
    accepted(body)


# --- unknown fields and types ----------------------------------------------------------------


@pytest.mark.parametrize("type_", list(PAYLOADS))
def test_unknown_top_level_field_is_rejected(type_: str) -> None:
    rejected(envelope(type_, priority="high"))


@pytest.mark.parametrize("type_", list(PAYLOADS))
def test_unknown_payload_field_is_rejected(type_: str) -> None:
    rejected(with_payload(type_, student_name="Jane Doe"))


@pytest.mark.parametrize("type_", ["session.paused", "SESSION.REQUESTED", "requested", "", None, 1])
def test_unknown_type_is_rejected(type_: Any) -> None:
    body = envelope()
    body["type"] = type_
    rejected(body)


def test_payload_of_another_type_is_rejected() -> None:
    rejected(envelope("session.matched", payload=PAYLOADS["session.requested"]))


@pytest.mark.parametrize("payload", [None, [], "x", 1])
def test_payload_must_be_an_object(payload: Any) -> None:
    rejected(envelope(payload=payload))


# --- event_id ----------------------------------------------------------------------------------


@pytest.mark.parametrize("event_id", ["", "not-a-uuid", "6f1c2b7e-3d4a-4e5f-9a0b", 12345, None])
def test_event_id_must_be_a_uuid(event_id: Any) -> None:
    rejected(envelope(event_id=event_id))


# --- schema_version ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    [
        0,
        2,
        -1,
        "1",
        None,
        True,
        1.0,
    ],
)
def test_schema_version_other_than_1_is_rejected(version: Any) -> None:
    rejected(envelope(schema_version=version))


# --- occurred_at -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "naive", ["2026-03-02T15:00:00", "2026-03-02 15:00:00", "2026-03-02T15:00:00.123456"]
)
def test_naive_timestamp_is_rejected(naive: str) -> None:
    rejected(envelope(occurred_at=naive))


@pytest.mark.parametrize("bad", ["", "yesterday", "2026-02-30T10:00:00Z", "2026-03-02", None])
def test_malformed_timestamp_is_rejected(bad: Any) -> None:
    rejected(envelope(occurred_at=bad))


@pytest.mark.parametrize("epoch", [1772463600, "1772463600"])
def test_epoch_number_is_not_an_rfc3339_timestamp(epoch: Any) -> None:
    rejected(envelope(occurred_at=epoch))


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-03-02T15:00:00Z", "2026-03-02T15:00:00Z"),
        ("2026-03-02T15:00:00+00:00", "2026-03-02T15:00:00Z"),
        ("2026-03-02T10:00:00-05:00", "2026-03-02T15:00:00Z"),
        ("2026-03-02T20:30:00+05:30", "2026-03-02T15:00:00Z"),
        ("2026-03-03T00:15:00+09:15", "2026-03-02T15:00:00Z"),
        ("2026-03-02T15:00:00.250+00:00", "2026-03-02T15:00:00.250000Z"),
    ],
)
def test_offsets_are_accepted_and_normalised_to_utc(sent: str, stored: str) -> None:
    env = accepted(envelope(occurred_at=sent))
    assert env.occurred_at.utcoffset().total_seconds() == 0
    assert env.canonical()["occurred_at"] == stored


# --- district_id / school_id / session_id: charset and length --------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("d", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("Dist_1.north-2", True),
        ("dist 1", False),
        ("dist:1", False),  # ':' is allowed in session ids only
        ("dist/1", False),
        ("dist@1", False),
        ("distr\u00e9", False),
        ("dist\n", False),
    ],
)
@pytest.mark.parametrize("where", ["district_id", "school_id"])
def test_district_and_school_id_charset_and_length(where: str, value: str, ok: bool) -> None:
    if where == "district_id":
        body = envelope(district_id=value)
    else:
        body = with_payload("session.requested", school_id=value)
    if ok:
        accepted(body)
    else:
        rejected(body)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("s", True),
        ("s" * 128, True),
        ("s" * 129, False),
        ("", False),
        ("sess:2026-03-02.A_b-9", True),
        ("sess 1", False),
        ("sess/1", False),
        ("sess#1", False),
        ("sess\n", False),
    ],
)
def test_session_id_charset_and_length(value: str, ok: bool) -> None:
    if ok:
        accepted(envelope(session_id=value))
    else:
        rejected(envelope(session_id=value))


# --- student_id (pseudonymous) and tutor ids ----------------------------------------------------


@pytest.mark.parametrize("student_id", ["stu-42", "S:0001.a_b", "x" * 128])
def test_pseudonymous_student_id_is_accepted(student_id: str) -> None:
    accepted(with_payload("session.requested", student_id=student_id))


@pytest.mark.parametrize(
    "student_id",
    ["jane.doe@school.org", "jdoe@district", "Jane Doe", "stu 42", "x" * 129, ""],
)
def test_student_id_that_looks_like_an_email_or_name_or_is_too_long_is_rejected(
    student_id: str,
) -> None:
    rejected(with_payload("session.requested", student_id=student_id))


@pytest.mark.parametrize(
    ("type_", "field"),
    [("session.matched", "tutor_id"), ("session.requested", "requested_tutor_id")],
)
@pytest.mark.parametrize(
    ("value", "ok"), [("t", True), ("t" * 128, True), ("t" * 129, False), ("", False)]
)
def test_tutor_id_length(type_: str, field: str, value: str, ok: bool) -> None:
    body = with_payload(type_, **{field: value})
    if ok:
        accepted(body)
    else:
        rejected(body)


# --- grade -------------------------------------------------------------------------------------


@pytest.mark.parametrize("grade", [0, 1, 6, 12])
def test_grade_in_range_is_accepted(grade: int) -> None:
    assert accepted(with_payload("session.requested", grade=grade)).payload.grade == grade


@pytest.mark.parametrize("grade", [-1, 13, "3", 3.0, True, None, "K"])
def test_grade_out_of_range_or_not_a_strict_int_is_rejected(grade: Any) -> None:
    rejected(with_payload("session.requested", grade=grade))


# --- subject -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("geometry", "geometry"),
        ("Geometry", "geometry"),
        ("AP-Calculus-2", "ap-calculus-2"),
        ("s" * 64, "s" * 64),
    ],
)
def test_subject_slug_is_normalised_to_lower_case(sent: str, stored: str) -> None:
    env = accepted(with_payload("session.requested", subject=sent))
    assert env.payload.subject == stored
    assert env.canonical()["payload"]["subject"] == stored


@pytest.mark.parametrize(
    "subject", ["geo metry", "s" * 65, "", "geo_metry", "geo.metry", "\u00e1lgebra", 7, None]
)
def test_invalid_subject_slug_is_rejected(subject: Any) -> None:
    rejected(with_payload("session.requested", subject=subject))


# --- free-text lengths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "field", "limit"),
    [("session.requested", "topic", 200), ("session.surveyed", "comment", 2000)],
)
def test_free_text_length_limit(type_: str, field: str, limit: int) -> None:
    accepted(with_payload(type_, **{field: "é" * limit}))  # counted in characters, not bytes
    rejected(with_payload(type_, **{field: "x" * (limit + 1)}))


# --- survey ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rating", [1, 2, 3, 4, 5])
def test_rating_1_to_5_is_accepted(rating: int) -> None:
    accepted(with_payload("session.surveyed", rating=rating))


@pytest.mark.parametrize("rating", [0, 6, -1, "4", 4.0, 4.5, True, None])
def test_rating_out_of_range_or_not_a_strict_int_is_rejected(rating: Any) -> None:
    rejected(with_payload("session.surveyed", rating=rating))


@pytest.mark.parametrize("helped", [True, False])
def test_helped_bool_is_accepted(helped: bool) -> None:
    assert accepted(with_payload("session.surveyed", helped=helped)).payload.helped is helped


@pytest.mark.parametrize("helped", [1, 0, "true", "yes", "false", None])
def test_helped_must_be_a_strict_bool(helped: Any) -> None:
    rejected(with_payload("session.surveyed", helped=helped))


# --- enums -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["student_left", "no_tutor_available", "timeout", "other"])
def test_cancel_reason_in_enum_is_accepted(reason: str) -> None:
    accepted(with_payload("session.cancelled", reason=reason))


@pytest.mark.parametrize("reason", ["Timeout", "tutor_left", "", None, 1])
def test_cancel_reason_outside_enum_is_rejected(reason: Any) -> None:
    rejected(with_payload("session.cancelled", reason=reason))


@pytest.mark.parametrize("outcome", ["resolved", "partial", "unresolved"])
def test_completed_outcome_in_enum_is_accepted(outcome: str) -> None:
    accepted(with_payload("session.completed", outcome=outcome))


def test_completed_outcome_is_optional() -> None:
    env = accepted(envelope("session.completed", payload={}))
    assert env.payload == CompletedPayload()
    assert env.canonical()["payload"] == {}


@pytest.mark.parametrize("outcome", ["Resolved", "done", "", 1])
def test_completed_outcome_outside_enum_is_rejected(outcome: Any) -> None:
    rejected(with_payload("session.completed", outcome=outcome))


# --- canonical form ------------------------------------------------------------------------------


def test_canonical_omits_absent_optional_fields() -> None:
    requested = accepted(envelope()).canonical()
    assert set(requested["payload"]) == {"school_id", "student_id", "grade", "subject"}
    surveyed = accepted(envelope("session.surveyed")).canonical()
    assert set(surveyed["payload"]) == {"helped", "rating"}
    explicit_null = accepted(with_payload("session.requested", topic=None)).canonical()
    assert "topic" not in explicit_null["payload"]


def test_canonical_keeps_present_optional_fields() -> None:
    body = with_payload("session.requested", topic="Fractions", requested_tutor_id="tutor-7")
    payload = accepted(body).canonical()["payload"]
    assert payload["topic"] == "Fractions"
    assert payload["requested_tutor_id"] == "tutor-7"


def test_canonical_shape() -> None:
    canonical = accepted(envelope(occurred_at="2026-03-02T10:00:00-05:00")).canonical()
    assert canonical == {
        "event_id": EVENT_ID,
        "type": "session.requested",
        "schema_version": 1,
        "district_id": "district-1",
        "session_id": "sess-1",
        "occurred_at": "2026-03-02T15:00:00Z",
        "payload": {"school_id": "school-1", "student_id": "stu-42", "grade": 4, "subject": "math"},
    }
    json.dumps(canonical)  # plain JSON types only


@pytest.mark.parametrize("type_", list(PAYLOADS))
def test_canonical_is_stable(type_: str) -> None:
    body = envelope(type_)
    first = accepted(body).canonical()
    # Same body again, via JSON, with keys in another order: same canonical bytes.
    reordered = json.dumps(dict(reversed(list(body.items()))))
    assert accepted(reordered).canonical() == first
    # Canonical is a fixed point: parsing it again gives it back unchanged.
    assert accepted(first).canonical() == first
    assert canonical_json(accepted(first).canonical()) == canonical_json(first)


def test_equivalent_bodies_have_the_same_canonical_form() -> None:
    """Different spellings of the same event (offset, subject case) store identically."""
    a = accepted(envelope(occurred_at="2026-03-02T15:00:00Z")).canonical()
    b_body = envelope(occurred_at="2026-03-02T16:00:00+01:00")
    b_body["payload"]["subject"] = "MATH"
    assert accepted(b_body).canonical() == a


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_envelope_is_immutable() -> None:
    env = accepted(envelope())
    assert isinstance(env, RequestedEnvelope)
    with pytest.raises(ValidationError):
        env.session_id = "other"  # type: ignore[misc]
