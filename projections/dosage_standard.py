"""The high-dosage standard over the session facts: who met it, who is on track, who falls short.

The rule is the domain's (domain/dosage_standard.py); this module counts it in ClickHouse.
Completed sessions come from `dosage.lengths_sql` (so every shared filter, a cohort among
them, applies through `facts_where`); a session belongs to the local week of its request,
like every weekly figure here.

Ungrouped, the figures read the completions once (grouped: once more, for the groups).
Per (group, student) one grouped pass keeps the week of each session as an array and
counts the met weeks from it; the next counts students per (group, first week, met
weeks): a few hundred buckets. Ungrouped, the same pass also counts each week's active and
meeting students (TALLY_SQL). Which weeks count is known before the query:
every week of a session lies in the weeks judged, and of those only a week whose school
days are all in breaks does not count, so the breaks alone name the weeks left out. The
weeks judged, and with them each student's due weeks (the counted weeks from their first
to the last judged), follow from the buckets in Python. A cohort's rows (a roster
group's alike: the cohort `roster.<code>`) join the members to the per-student figures (a
student's weeks do not depend on the cohort), not to every session. The student list
needs the last week judged inside its query (each student's due weeks), so it first reads
the first and last week with a session, unless the dates give them. Weeks are passed in as
day numbers (a leading 0 keeps an array typed when it would be empty), so the SQL stays
within what ClickHouse 18.16 runs.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from tutorledger.domain.district import SchoolHours
from tutorledger.domain.dosage_standard import DosageStandard, mondays
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.dosage import lengths_sql
from tutorledger.projections.engagement import iso_week
from tutorledger.projections.filters import Filters
from tutorledger.projections.group_members import PREFIX
from tutorledger.projections.groups import STUDENT_GROUP

# group_by names → response columns → columns of the per-session source (a cohort's and a
# roster group's: of the members joined to it).
STANDARD_GROUPS = {"school": "school_id", "subject": "subject", "grade": "grade",
                   "cohort": "cohort_id", "group": STUDENT_GROUP,
                   "provider": "provider"}  # fmt: skip
SOURCE = {"school_id": "school", "subject": "subj", "grade": "gr", "cohort_id": "cohort",
          STUDENT_GROUP: "grp", "provider": "prov"}  # fmt: skip
COHORT = "cohort_id"
Keys = tuple[str, ...]
EPOCH = date(1970, 1, 1)

# Each cohort's members as of the position, one row per (cohort, member).
MEMBERS_SQL = """
SELECT cohort_id AS cohort, arrayJoin(m) AS student FROM (
    SELECT cohort_id, argMax(members, position) AS m FROM {cohorts}
    WHERE district_id = %(district_id)s AND position <= %(as_of)s
    GROUP BY cohort_id
)
"""
# Each roster group's members as of the position, one row per (group code, member): the
# cohorts `roster.<code>` but `roster.all` (a student in several groups is in each).
ROSTER_MEMBERS_SQL = f"""
SELECT substring(cohort_id, {len(PREFIX) + 1}) AS grp, arrayJoin(m) AS student FROM (
    SELECT cohort_id, argMax(members, position) AS m FROM {{cohorts}}
    WHERE district_id = %(district_id)s AND position <= %(as_of)s
        AND cohort_id LIKE '{PREFIX}%%' AND cohort_id != '{PREFIX}all'
    GROUP BY cohort_id
)
"""
# Per (group, student), from the student's sessions as arrays (a hash table of students,
# not of student-weeks): `weeks`, the week of each session; `long_weeks`, the week of each
# long-enough one; `met_weeks`, each week in which one reaches the count per week (the
# per_week-th occurrence of its week, arrayEnumerateUniq); `met`, those that are counted,
# capped at the standard's weeks (more change nothing).
PER_STUDENT_SQL = """
SELECT {keys}student, toUInt32(min(week)) AS first_day, groupArray(toUInt32(week)) AS weeks,
    arrayFilter((w, ok) -> ok, weeks, groupArray(toUInt8(length_us >= %(session_us)s)))
        AS long_weeks,
    arrayFilter((w, nth) -> nth = %(per_week)s, long_weeks, arrayEnumerateUniq(long_weeks))
        AS met_weeks,
    toUInt32(least(arrayCount(w -> NOT has(%(closed)s, w), met_weeks), %(weeks)s)) AS met{extra}
FROM (
    SELECT {keys}student, length_us, toMonday(toDate(at, %(tz)s)) AS week{columns} FROM {source}
)
GROUP BY {keys}student
"""
# A cohort's students: the per-student figures of its members.
JOINED = "({students}) AS per_student ALL INNER JOIN ({members}) AS cohort_members USING student"
# Students per (group, first week, met weeks).
BUCKETS_SQL = """
SELECT {keys}first_day, met, count()
FROM {source}
GROUP BY {keys}first_day, met
ORDER BY {keys}first_day, met
"""
# The weekly series and the buckets in one read: each student adds a (0, group, first week,
# met weeks) tuple for each of its groups (ungrouped: the one group ''; by cohort: the
# cohorts it is a member of; `replicate`, not a lambda that captures the student's columns,
# which ClickHouse 18.16 cannot resolve in a grouping key), a (1, '', week, 0) for each
# distinct week of theirs (active) and a (2, '', week, 0) for each week they met (meeting);
# the tuples are counted.
TALLY_SQL = """
SELECT arrayJoin(arrayConcat(
    arrayMap((g, d, m) -> (toUInt8(0), g, d, m),
             {groups}, replicate(first_day, {groups}), replicate(met, {groups})),
    arrayMap(w -> (toUInt8(1), '', w, toUInt32(0)),
             arrayFilter((w, nth) -> nth = 1, weeks, arrayEnumerateUniq(weeks))),
    arrayMap(w -> (toUInt8(2), '', w, toUInt32(0)), met_weeks)
)) AS tally, count()
FROM {source}
GROUP BY tally
ORDER BY tally
"""
# Each student's cohorts, beside the per-student figures (none: an empty array).
WITH_COHORTS = """({students}) AS per_student ANY LEFT JOIN (
    SELECT student, groupArray(cohort) AS cohorts FROM ({members}) GROUP BY student
) AS memberships USING student"""
# The student list: per student also the met weeks uncapped, the due weeks (the counted
# weeks judged from the first), one session id (to find the token) and the sessions.
LISTED = """, min(week) AS first_week,
    arrayCount(w -> NOT has(%(closed)s, w), met_weeks) AS met_all,
    arrayCount(w -> w >= first_day, %(counted)s) AS due,
    min(session_id) AS one_session, count() AS sessions"""
SHORT_SQL = """
SELECT one_session, toString(first_week), met_all, due, sessions FROM ({students})
WHERE met_all < %(weeks)s AND met_all < due ORDER BY one_session
"""
# The first and last week with a completed session (the weeks judged, without dates).
SPAN_SQL = """
SELECT toString(min(week)), toString(max(week)), count()
FROM (SELECT toMonday(toDate(at, %(tz)s)) AS week FROM ({lengths}))
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
        return [0] + [_day(w) for w, n in sorted(self.school_days.items()) if n]

    def due(self, first_day: int) -> int:
        """Counted weeks from the one starting on day `first_day` to the last judged."""
        counted = self.counted[1:]
        return len(counted) - bisect_left(counted, first_day)


def _day(monday: date) -> int:
    return (monday - EPOCH).days


def closed_weeks(filters: Filters, standard: DosageStandard, hours: SchoolHours) -> list[int]:
    """Day numbers of the weeks with no school day (all in breaks) within the filters' dates,
    after a 0: a week of a session is counted unless it is one of these."""
    out = {0}
    for b in standard.breaks:
        start = max(b.start, filters.date_from or b.start)
        end = min(b.end, filters.date_to or b.end)
        for week in mondays(start, end) if start <= end else ():
            if not standard.school_days(week, hours.days):
                out.add(_day(week))
    return sorted(out)


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


def per_student_sql(store: ProjectionStore, filters: Filters, lengths: str, keys: Keys) -> str:
    """Per (group, student): first week and met weeks; a cohort's or a roster group's from
    its members' (at most one of the two: parse_standard_group_by)."""
    session_keys = [k for k in keys if k not in (COHORT, STUDENT_GROUP)]
    columns = "".join(f"{SOURCE[k]}, " for k in session_keys)
    students = PER_STUDENT_SQL.format(keys=columns, source=f"({lengths})", extra="", columns="")
    joined = MEMBERS_SQL if COHORT in keys else ROSTER_MEMBERS_SQL if STUDENT_GROUP in keys else ""
    if not joined:
        return f"({students})"
    members = joined.format(cohorts=filters.tables(store).cohorts)
    return JOINED.format(students=students, members=members)


Bucket = tuple[int, int, int]  # first week's day number, met weeks (capped), students
Series = dict[date, tuple[int, int]]  # week → (active students, meeting students)


def tally_sql(store: ProjectionStore, filters: Filters, lengths: str, by_cohort: bool) -> str:
    """The weekly series with the buckets, ungrouped or per cohort, from one read."""
    students = PER_STUDENT_SQL.format(keys="", source=f"({lengths})", extra="", columns="")
    if not by_cohort:
        return TALLY_SQL.format(groups="['']", source=f"({students})")
    members = MEMBERS_SQL.format(cohorts=filters.tables(store).cohorts)
    source = WITH_COHORTS.format(students=students, members=members)
    return TALLY_SQL.format(groups="cohorts", source=source)


Found = dict[tuple[Any, ...], list[Bucket]]  # group values → its buckets


def _tally(rows: list[Any], grouped: bool) -> tuple[Found, Series]:
    """The buckets per group (in the query's order) and the weekly series of a TALLY_SQL
    answer; ungrouped, the one group is ()."""
    found: Found = {}
    weekly: dict[int, list[int]] = {}
    for (kind, group, day, met), n in rows:
        if int(kind) == 0:
            found.setdefault((str(group),) if grouped else (), []).append(
                (int(day), int(met), int(n))
            )
        else:
            weekly.setdefault(int(day), [0, 0])[int(kind) - 1] = int(n)
    series = {EPOCH + timedelta(days=d): (a, m) for d, (a, m) in sorted(weekly.items())}
    return found, series


def _groups(rows: list[Any], width: int) -> Found:
    """Buckets per group, in the query's order of the groups."""
    out: Found = {}
    for row in rows:
        first, met, n = (int(v) for v in row[width:])
        out.setdefault(tuple(row[:width]), []).append((first, met, n))
    return out


def _statuses(buckets: list[Bucket], standard: DosageStandard, span: Window) -> tuple[int, ...]:
    """Served, met and on-track students of a group's buckets."""
    served = sum(n for _, _, n in buckets)
    met = sum(n for _, m, n in buckets if m >= standard.weeks)
    on_track = sum(n for f, m, n in buckets if m < standard.weeks and m >= span.due(f))
    return served, met, on_track


def dosage_standard(
    store: ProjectionStore,
    filters: Filters,
    standard: DosageStandard,
    hours: SchoolHours,
    keys: tuple[str, ...],
) -> dict[str, Any]:
    """Per group: students served, met, on track and short; the weekly series (ungrouped)."""
    lengths = lengths_sql(store, filters)
    params = {
        **filters.params(),
        "session_us": standard.session_us,
        "per_week": standard.sessions_per_week,
        "weeks": standard.weeks,
        "closed": closed_weeks(filters, standard, hours),
    }
    by_cohort = keys == (COHORT,)  # else grouped by a session's column: a second read
    found, series = _tally(
        store.execute(tally_sql(store, filters, lengths, by_cohort), params), by_cohort
    )
    span = window(filters, hours, standard, list(series))
    if not keys:
        found = {(): found.get((), [])}
    elif not by_cohort:
        columns = "".join(f"{SOURCE[k]}, " for k in keys)
        source = per_student_sql(store, filters, lengths, keys)
        grouped = store.execute(BUCKETS_SQL.format(keys=columns, source=source), params)
        found = _groups(grouped, len(keys))
    rows = []
    for group, buckets in found.items():
        values = dict(zip(keys, group, strict=True))
        served, met, on_track = _statuses(buckets, standard, span)
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
    lengths = lengths_sql(store, filters)
    params = _params(filters, standard, Window(None, None, {}))
    active: list[date] = []
    if filters.date_from is None or filters.date_to is None:  # else the dates are the span
        first, last, n = store.execute(SPAN_SQL.format(lengths=lengths), params)[0]
        active = [date.fromisoformat(str(first)), date.fromisoformat(str(last))] if int(n) else []
    span = window(filters, hours, standard, active)
    params |= {"counted": span.counted, "closed": closed_weeks(filters, standard, hours)}
    students = PER_STUDENT_SQL.format(
        keys="", source=f"({lengths})", extra=LISTED, columns=", session_id"
    )
    found = [
        {
            "session_id": str(sid),
            "first_week": date.fromisoformat(str(first)),
            "met_weeks": int(met),
            "counted_weeks": int(due),
            "sessions_completed": int(n),
        }
        for sid, first, met, due, n in store.execute(SHORT_SQL.format(students=students), params)
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


def met_students_sql(
    store: ProjectionStore, filters: Filters, standard: DosageStandard, hours: SchoolHours
) -> tuple[str, dict[str, Any]]:
    """Per student with a completed session in the filters: `student_key` and `met` (1 when
    they met the standard over the range, as the metric's `met`), with its parameters; the
    equity gaps join it to the roster groups."""
    students = PER_STUDENT_SQL.format(
        keys="", source=f"({lengths_sql(store, filters)})", extra="", columns=""
    )
    sql = f"SELECT student AS student_key, toUInt8(met >= %(weeks)s) AS met FROM ({students})"
    params = {
        **filters.params(),
        "session_us": standard.session_us,
        "per_week": standard.sessions_per_week,
        "weeks": standard.weeks,
        "closed": closed_weeks(filters, standard, hours),
    }
    return sql, params
