"""Filters shared by every metric (docs/contract.md), rendered to parameterised SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Filters:
    """What a dashboard asks for; `as_of_position` is the effective ledger position."""

    district_id: str
    as_of_position: int
    tz: str
    school_id: str | None = None
    subject: str | None = None
    grade: int | None = None
    date_from: date | None = None
    date_to: date | None = None

    def params(self) -> dict[str, Any]:
        return {
            "district_id": self.district_id,
            "as_of": self.as_of_position,
            "tz": self.tz,
            "school_id": self.school_id or "",
            "subject": self.subject or "",
            "grade": -1 if self.grade is None else self.grade,
            "date_from": self.date_from or date(1970, 1, 2),
            "date_to": self.date_to or date(2105, 12, 31),
        }


# One row per session as of the position: the request's attributes and each step's time.
SESSIONS_SQL = """
SELECT
    session_id,
    anyIf(school_id, type = 'session.requested') AS school_id,
    anyIf(student_id, type = 'session.requested') AS student_id,
    anyIf(grade, type = 'session.requested') AS grade,
    anyIf(subject, type = 'session.requested') AS subject,
    minIf(occurred_at, type = 'session.requested') AS requested_at,
    minIf(occurred_us, type = 'session.requested') AS requested_us,
    minIf(occurred_at, type = 'session.matched') AS matched_at,
    minIf(occurred_us, type = 'session.matched') AS matched_us,
    countIf(type = 'session.matched') AS matched,
    countIf(type = 'session.completed') AS completed,
    countIf(type = 'session.cancelled') AS cancelled,
    countIf(type = 'session.surveyed') AS surveyed,
    anyIf(helped, type = 'session.surveyed') AS helped,
    anyIf(rating, type = 'session.surveyed') AS rating
FROM ledger_events FINAL
WHERE district_id = %(district_id)s AND position <= %(as_of)s AND session_id != ''
GROUP BY session_id
"""

# Filters on the request's attributes; a session belongs to the local day it was requested.
SESSION_FILTER_SQL = """
    (%(school_id)s = '' OR school_id = %(school_id)s)
    AND (%(subject)s = '' OR subject = %(subject)s)
    AND (%(grade)s = -1 OR grade = %(grade)s)
    AND toDate(requested_at, %(tz)s) >= %(date_from)s
    AND toDate(requested_at, %(tz)s) <= %(date_to)s
"""


def filtered_sessions_sql() -> str:
    """The sessions of the filters, as a subquery body."""
    return f"SELECT * FROM ({SESSIONS_SQL}) WHERE {SESSION_FILTER_SQL}"
