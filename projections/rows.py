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
    # Who recorded the event (domain/provenance.py; migration 0007): '' when it names none.
    "provider",
    "key_id",
    "source_sha256",
)
_EPOCH = date(1970, 1, 1)
_NONE: dict[str, Any] = {}


def whole_seconds(text: str, at: datetime) -> datetime:
    """`at` (parsed from `text`) without its microseconds. The stored form of an instant is
    `YYYY-MM-DDTHH:MM:SS.ffffffZ`: parsing its first 19 characters again is a third of the
    cost of `datetime.replace` (per event, in bulk replays)."""
    if len(text) == 27 and text[19] == "." and text[26] == "Z":
        return datetime.fromisoformat(text[:19] + "Z")
    return at.replace(microsecond=0) if at.microsecond else at


def event_row(position: int, event: dict[str, Any]) -> tuple[Any, ...]:
    """Flatten one ledger event (stored or published form) into a row of COLUMNS."""
    payload: dict[str, Any] = event["payload"]
    get = payload.get
    text: str = event["occurred_at"]
    at = datetime.fromisoformat(text)
    enrollment: dict[str, int] | None = get("enrollment")
    if enrollment:
        grades = sorted(enrollment, key=int)
        enrollment_grades = [int(g) for g in grades]
        enrollment_counts = [int(enrollment[g]) for g in grades]
    else:
        enrollment_grades, enrollment_counts = [], []
    helped = get("helped")
    provenance: dict[str, Any] = event.get("provenance") or _NONE
    return (
        position,
        event["event_id"],
        event["type"],
        event["district_id"],
        event.get("session_id", ""),
        get("school_id") or event.get("school_id", ""),
        whole_seconds(text, at),
        at.microsecond,
        get("student_token", ""),
        get("grade", -1),
        get("subject", ""),
        "",  # topic: free text stays sealed in the event store
        get("tutor_id", ""),
        get("requested_tutor_id") or "",
        get("outcome") or "",
        -1 if helped is None else int(helped),
        get("rating", -1),
        "",  # comment: free text stays sealed in the event store
        get("reason", ""),
        get("name", ""),
        enrollment_grades,
        enrollment_counts,
        date.fromisoformat(payload["as_of"]) if "as_of" in payload else _EPOCH,
        event.get("cohort_id", ""),
        get("student_tokens") or [],  # a cohort's members: tokens only
        get("term", ""),
        date.fromisoformat(payload["term_end"]) if "term_end" in payload else _EPOCH,
        float(get("score", 0.0)),
        provenance.get("provider") or "",
        provenance.get("key_id") or "",
        provenance.get("source_sha256") or "",
    )
