"""Metric filters shared by every metric, rendered to parameterised SQL over the read models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.answer_cache import EPOCH_PARAM
from tutorledger.projections.cohorts import members_condition
from tutorledger.projections.group_members import PREFIX, group_condition
from tutorledger.projections.read_models import ReadTables, Tables, current_generation
from tutorledger.projections.steps import step_in


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
    provider: str | None = None  # only sessions whose request names this provider (provenance)
    generation: int | None = None  # pin the read models' generation (default: the published one)
    cohort_id: str | None = None  # only the cohort's members as of the position (pins generation)
    group: str | None = None  # only the roster group's members as of the position (pins too)
    # (position, read-model state at it) pairs from projections/answer_cache.py: with the
    # state at `as_of_position` in the parameters, answers at that position may be reused.
    epochs: tuple[tuple[int, str], ...] = ()

    def params(self) -> dict[str, Any]:
        return self.epoch_param() | {
            "district_id": self.district_id,
            "as_of": self.as_of_position,
            "tz": self.tz,
            "school_id": self.school_id or "",
            "subject": self.subject or "",
            "grade": -1 if self.grade is None else self.grade,
            "cohort_id": self.cohort_id or "",
            "group_cohort": PREFIX + (self.group or ""),
            "provider": self.provider or "",
            "date_from": self.date_from or date(1970, 1, 2),
            "date_to": self.date_to or date(2105, 12, 31),
            # Whatever the zone (offsets lie within ±14 h), a local day lies inside these UTC
            # bounds; they let the sort key skip rows, toDate(…, tz) then decides exactly.
            "utc_from": _midnight(self.date_from, -1) if self.date_from else "",
            "utc_to": _midnight(self.date_to, 2) if self.date_to else "",
        }

    def epoch_param(self) -> dict[str, Any]:
        """{"epoch": …} when the read models' state at the position is known, else {}."""
        epoch = dict(self.epochs).get(self.as_of_position)
        return {} if epoch is None else {EPOCH_PARAM: epoch}

    def tables(self, store: ProjectionStore) -> ReadTables:
        """The read models this answer reads: one generation for all of its queries, the
        session facts deduplicated by position (read_models.ReadTables)."""
        return ReadTables(self.generation or current_generation(store))


def _midnight(day: date, shift: int) -> str:
    """UTC midnight `shift` days from `day`, clamped to the range a ClickHouse DateTime holds."""
    day = min(max(day, date(1970, 1, 3)), date(2105, 12, 29)) + timedelta(days=shift)
    return datetime.combine(day, time()).strftime("%Y-%m-%d %H:%M:%S")


def facts_where(filters: Filters, steps: tuple[int, ...]) -> str:
    """Conditions on `session_facts` for these steps: only the filters given, so a missing
    filter costs nothing; values stay parameters (`steps` are the code's own integers)."""
    conditions = [
        "district_id = %(district_id)s",
        step_in(steps),
        "position <= %(as_of)s",
    ]
    if filters.school_id is not None:
        conditions.append("school_id = %(school_id)s")
    if filters.subject is not None:
        conditions.append("subject = %(subject)s")
    if filters.grade is not None:
        conditions.append("grade = %(grade)s")
    if filters.provider is not None:
        conditions.append("provider = %(provider)s")
    if filters.cohort_id is not None:
        if filters.generation is None:
            raise ValueError("a cohort filter needs a pinned read-model generation")
        conditions.append(members_condition(Tables(filters.generation).cohorts))
    if filters.group is not None:
        if filters.generation is None:
            raise ValueError("a group filter needs a pinned read-model generation")
        conditions.append(group_condition(Tables(filters.generation).cohorts))
    if filters.date_from is not None:
        conditions.append("requested_at >= toDateTime(%(utc_from)s, 'UTC')")
        conditions.append("toDate(requested_at, %(tz)s) >= %(date_from)s")
    if filters.date_to is not None:
        conditions.append("requested_at < toDateTime(%(utc_to)s, 'UTC')")
        conditions.append("toDate(requested_at, %(tz)s) <= %(date_to)s")
    return " AND ".join(conditions)


# The reference fold over the raw events (what the read models must always equal): one row
# per session as of the position, with the request's attributes and each step's time.
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
    anyIf(rating, type = 'session.surveyed') AS rating,
    anyIf(provider, type = 'session.requested') AS provider
FROM ledger_events FINAL
WHERE district_id = %(district_id)s AND position <= %(as_of)s AND session_id != ''
GROUP BY session_id
"""

# Filters on the request's attributes; a session belongs to the local day it was requested.
SESSION_FILTER_SQL = """
    (%(school_id)s = '' OR school_id = %(school_id)s)
    AND (%(subject)s = '' OR subject = %(subject)s)
    AND (%(grade)s = -1 OR grade = %(grade)s)
    AND (%(provider)s = '' OR provider = %(provider)s)
    AND toDate(requested_at, %(tz)s) >= %(date_from)s
    AND toDate(requested_at, %(tz)s) <= %(date_to)s
"""


def filtered_sessions_sql() -> str:
    """The sessions of the filters, as a subquery body."""
    return f"SELECT * FROM ({SESSIONS_SQL}) WHERE {SESSION_FILTER_SQL}"
