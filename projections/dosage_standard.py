"""The high-dosage standard over the session facts: who met it, who is on track, who falls short.

The rule is the domain's (domain/dosage_standard.py); this module counts it in ClickHouse.
Completed sessions come from `dosage.lengths_sql` (so every shared filter, a cohort among
them, applies through `facts_where`); a session belongs to the local week of its request,
like every weekly figure here. Per (group, student, week) one grouped pass counts the
sessions of at least the standard's length; per (group, student) a second pass counts the
met weeks and the counted weeks since the student's first. Weeks are passed in as day
numbers (a leading 0 keeps the array typed when no week counts), so the SQL stays within
what ClickHouse 18.16 runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from tutorledger.domain.district import SchoolHours
from tutorledger.domain.dosage_standard import DosageStandard, mondays
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.dosage import lengths_sql
from tutorledger.projections.engagement import iso_week
from tutorledger.projections.filters import Filters

# group_by names → response columns → columns of the per-session source.
STANDARD_GROUPS = {"school": "school_id", "subject": "subject", "grade": "grade",
                   "cohort": "cohort_id"}  # fmt: skip
SOURCE = {"school_id": "school", "subject": "subj", "grade": "gr", "cohort_id": "cohort"}
EPOCH = date(1970, 1, 1)

# Each cohort's members as of the position, one row per (cohort, member).
MEMBERS_SQL = """
SELECT cohort_id AS cohort, arrayJoin(m) AS student FROM (
    SELECT cohort_id, argMax(members, position) AS m FROM {cohorts}
    WHERE district_id = %(district_id)s AND position <= %(as_of)s
    GROUP BY cohort_id
)
"""
# Per (group, student, local week): sessions long enough (and, for the student list, all
# completed sessions and the smallest session id: string work the counts do not need).
WEEKS_SQL = """
SELECT {keys}student, toMonday(toDate(at, %(tz)s)) AS week,
    countIf(length_us >= %(session_us)s) AS q{extra}
FROM {source}
GROUP BY {keys}student, week
"""
LISTED = ", count() AS n, min(session_id) AS sid"
# Per (group, student): first week, met weeks, counted weeks since the first week.
STUDENTS_SQL = """
SELECT {keys}student, min(week) AS first_week, toUInt32(first_week) AS first_day,
    countIf(q >= %(per_week)s AND has(%(counted)s, toUInt32(week))) AS met,
    arrayCount(w -> w >= first_day, %(counted)s) AS due{extra}
FROM ({weeks})
GROUP BY {keys}student
"""
LISTED_STUDENTS = ", min(sid) AS one_session, sum(n) AS sessions"
STATUS_SQL = """
SELECT {keys}count(), countIf(met >= %(weeks)s), countIf(met < %(weeks)s AND met >= due)
FROM ({students}) {grouping}
"""
SERIES_SQL = """
SELECT toString(week), count(), countIf(q >= %(per_week)s) FROM ({weeks})
GROUP BY week ORDER BY week
"""
SHORT_SQL = """
SELECT one_session, toString(first_week), met, due, sessions FROM ({students})
WHERE met < %(weeks)s AND met < due ORDER BY one_session
"""


@dataclass(frozen=True)
class Window:
    """The weeks judged: Mondays from `first` to `last`, and which of them count."""

    first: date | None
    last: date | None
    school_days: dict[date, int]

    @property
    def counted(self) -> list[int]:
        """Day numbers of the counted weeks, after a 0 that keeps the SQL array typed."""
        return [0] + [(w - EPOCH).days for w, n in sorted(self.school_days.items()) if n]


def _weeks_sql(
    store: ProjectionStore, filters: Filters, lengths: str, keys: tuple[str, ...], extra: str = ""
) -> str:
    """Per (group, student, week) over the `lengths` subquery body (joined to the cohorts'
    members when grouping by cohort)."""
    source = f"({lengths})"
    if "cohort_id" in keys:
        members = MEMBERS_SQL.format(cohorts=filters.tables(store).cohorts)
        source = f"{source} AS done ALL INNER JOIN ({members}) AS cohort_members USING student"
    columns = "".join(f"{SOURCE[k]}, " for k in keys)
    return WEEKS_SQL.format(keys=columns, source=source, extra=extra)


def _params(filters: Filters, standard: DosageStandard, window: Window) -> dict[str, Any]:
    return {
        **filters.params(),
        "session_us": standard.session_us,
        "per_week": standard.sessions_per_week,
        "weeks": standard.weeks,
        "counted": window.counted,
    }


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def window(
    filters: Filters, hours: SchoolHours, standard: DosageStandard, active: list[date]
) -> Window:
    """From the week of `from` (else the first week with a completed session) to the week of
    `to` (else the last), each week with its school days."""
    first = _monday(filters.date_from) if filters.date_from else min(active, default=None)
    last = _monday(filters.date_to) if filters.date_to else max(active, default=None)
    if first is None or last is None:
        return Window(first, last, {})
    days = {w: standard.school_days(w, hours.days) for w in mondays(first, last)}
    return Window(first, last, days)


def dosage_standard(
    store: ProjectionStore,
    filters: Filters,
    standard: DosageStandard,
    hours: SchoolHours,
    keys: tuple[str, ...],
) -> dict[str, Any]:
    """Per group: students served, met, on track and short; the weekly series (ungrouped)."""
    lengths = lengths_sql(store, filters)
    plain = _weeks_sql(store, filters, lengths, ())
    probe = _params(filters, standard, Window(None, None, {}))
    series = {
        date.fromisoformat(str(w)): (int(a), int(m))
        for w, a, m in store.execute(SERIES_SQL.format(weeks=plain), probe)
    }
    span = window(filters, hours, standard, list(series))
    params = _params(filters, standard, span)
    columns = "".join(f"{SOURCE[k]}, " for k in keys)
    weeks_sql = _weeks_sql(store, filters, lengths, keys)
    students = STUDENTS_SQL.format(keys=columns, weeks=weeks_sql, extra="")
    order = ", ".join(SOURCE[k] for k in keys)
    grouping = f"GROUP BY {order} ORDER BY {order}" if keys else ""
    sql = STATUS_SQL.format(keys=columns, students=students, grouping=grouping)
    rows = []
    for row in store.execute(sql, params):
        values = dict(zip(keys, row, strict=False))
        served, met, on_track = (int(v) for v in row[len(keys) :])
        rows.append(
            {
                **{c: _key(c, values.get(c)) for c in STANDARD_GROUPS.values()},
                "students": served,
                "met": met,
                "on_track": on_track,
                "short": served - met - on_track,
            }
        )
    weeks = [
        {
            "week": iso_week(w),
            "week_start": w,
            "school_days": n,
            "active_students": series.get(w, (0, 0))[0],
            "students_meeting_week": series.get(w, (0, 0))[1],
        }
        for w, n in sorted(span.school_days.items())
    ]
    return {
        "first_week": span.first,
        "last_week": span.last,
        "counted_weeks": len(span.counted) - 1,
        "rows": rows,
        "weeks": weeks,
    }


def _key(column: str, value: Any) -> Any:
    if value is None:
        return None
    return int(value) if column == "grade" else str(value)


def falling_short(
    store: ProjectionStore, filters: Filters, standard: DosageStandard, hours: SchoolHours
) -> tuple[Window, list[dict[str, Any]]]:
    """The students short of the standard (one of their sessions, to find their token)."""
    plain = _weeks_sql(store, filters, lengths_sql(store, filters), (), LISTED)
    probe = _params(filters, standard, Window(None, None, {}))
    active = [
        date.fromisoformat(str(r[0])) for r in store.execute(SERIES_SQL.format(weeks=plain), probe)
    ]
    span = window(filters, hours, standard, active)
    students = STUDENTS_SQL.format(keys="", weeks=plain, extra=LISTED_STUDENTS)
    sql = SHORT_SQL.format(students=students)
    found = [
        {
            "session_id": str(sid),
            "first_week": date.fromisoformat(str(first)),
            "met_weeks": int(met),
            "counted_weeks": int(due),
            "sessions_completed": int(n),
        }
        for sid, first, met, due, n in store.execute(sql, _params(filters, standard, span))
    ]
    return span, found


# Completed sessions for an export: id, student key, local date of the request, length.
SESSIONS_SQL = """
SELECT session_id, student, toString(toDate(at, %(tz)s)), length_us FROM ({lengths})
ORDER BY session_id
"""


Attendance = tuple[str, int, date, int]


def completed_sessions(store: ProjectionStore, filters: Filters) -> list[Attendance]:
    """Every completed session of the filters: (session id, student key, local date, µs)."""
    sql = SESSIONS_SQL.format(lengths=lengths_sql(store, filters))
    return [
        (str(s), int(k), date.fromisoformat(str(d)), int(us))
        for s, k, d, us in store.execute(sql, filters.params())
    ]
