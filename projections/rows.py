"""Event → row mapping: one `ledger_events` row per ledger event, keyed by position.

No personal data reaches a row: the `student_id` column holds the student's random token
(a cohort's `members` too)
(distinct counts stay exact), `topic` and `comment` are always empty (free text never leaves
the event store), and the stored ciphertext is dropped.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

COLUMNS: tuple[str, ...] = (
    "position",
    "event_id",
    "type",
    "district_id",
    "session_id",
    "school_id",
    "occurred_at",
    "occurred_us",
    "student_id",
    "grade",
    "subject",
    "topic",
    "tutor_id",
    "requested_tutor_id",
    "outcome",
    "helped",
    "rating",
    "comment",
    "reason",
    "school_name",
    "enrollment_grades",
    "enrollment_counts",
    "as_of",
    "cohort_id",
    "members",
    "term",
    "term_end",
    "score",
)
_EPOCH = date(1970, 1, 1)


def event_row(position: int, event: dict[str, Any]) -> tuple[Any, ...]:
    """Flatten one ledger event (stored or published form) into a row of COLUMNS."""
    payload: dict[str, Any] = event["payload"]
    at = datetime.fromisoformat(event["occurred_at"])
    enrollment: dict[str, int] = payload.get("enrollment") or {}
    grades = sorted(enrollment, key=int)
    helped = payload.get("helped")
    return (
        position,
        event["event_id"],
        event["type"],
        event["district_id"],
        event.get("session_id", ""),
        payload.get("school_id") or event.get("school_id", ""),
        at.replace(microsecond=0),
        at.microsecond,
        payload.get("student_token", ""),
        payload.get("grade", -1),
        payload.get("subject", ""),
        "",  # topic: free text stays sealed in the event store
        payload.get("tutor_id", ""),
        payload.get("requested_tutor_id") or "",
        payload.get("outcome") or "",
        -1 if helped is None else int(helped),
        payload.get("rating", -1),
        "",  # comment: free text stays sealed in the event store
        payload.get("reason", ""),
        payload.get("name", ""),
        [int(g) for g in grades] if grades else [],  # no comprehension frame per session event
        [int(enrollment[g]) for g in grades] if grades else [],
        date.fromisoformat(payload["as_of"]) if "as_of" in payload else _EPOCH,
        event.get("cohort_id", ""),
        payload.get("student_tokens") or [],  # a cohort's members: tokens only
        payload.get("term", ""),
        date.fromisoformat(payload["term_end"]) if "term_end" in payload else _EPOCH,
        float(payload.get("score", 0.0)),
    )
