"""Dashboard tables of many metric answers, each table from one grouped query.

`projections.reach` and `demand_by_grade` count every school, week, month or grade in one
scan; here each row becomes the answer the API gives for that row's narrower filter: the
same response model, built by the same function, withheld by the same suppression for the
caller's role. So a row equals GET /v1/metrics/participation?school_id=<school> (or `to`
= a week's end, or a month's `from`/`to`), small cells and complements included.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel

from tutorledger.api.dashboard.marks import Shown
from tutorledger.api.dashboard.tables import (
    DrillGrades,
    GradeRow,
    MonthRow,
    ReachBySchool,
    ReachRow,
    ReachTrend,
    TrendRow,
    UseByMonth,
)
from tutorledger.api.metrics import schemas as ms
from tutorledger.api.metrics.registry import DEMAND, PARTICIPATION
from tutorledger.api.metrics.schemas import Participation
from tutorledger.api.metrics.scope import Scope
from tutorledger.projections.engagement import iso_week
from tutorledger.projections.participation import participation_figures
from tutorledger.projections.reach import NONE, Counts, mondays, month_starts, month_weeks

Pair = tuple[BaseModel, BaseModel]  # (exact answer, the answer the caller may see)


def narrowed(scope: Scope, **changes: Any) -> Scope:
    """The same position and head, with some filters replaced."""
    return replace(scope, filters=replace(scope.filters, **changes))


@dataclass(frozen=True)
class Near:
    """The page's grouped counts at the previous published position (Scope.previous()): each
    row's answer there is its neighbour, against which a dashboard key's row is checked, so a
    table needs one more grouped query, not one per row (api/http/published.py)."""

    by_school: dict[str, Counts]
    by_week: dict[date, Counts]
    by_month: dict[tuple[date, bool], Counts]
    enrolment: dict[date | None, dict[str, int]]
    cohort: int | None


Earlier = tuple[Counts, int, int | None]  # one row's counts, enrolment and cohort back then


def participation_pair(
    scope: Scope, counts: Counts, enrolled: int, cohort: int | None, near: Earlier | None = None
) -> Pair:
    """The participation answer for `scope` from grouped counts, exact and as shown (checked
    against the same row at the previous published position when the caller has one)."""
    body = Participation(**scope.envelope(), **participation_figures(counts, enrolled, cohort))
    before = None
    if near is not None:
        was = participation_figures(*near)
        before = [Participation(**scope.envelope(), **was)]
    return body, scope.protect(body, PARTICIPATION, before)


def ratio(numerator: Any, denominator: Any) -> float | None:
    if numerator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


def _reach_row(school_id: str, name: str | None, p: BaseModel, cohort: bool) -> ReachRow:
    f = p.model_dump()
    base = f["cohort_size"] if cohort else f["enrolled"]  # reach's denominator
    return ReachRow(
        school_id=school_id,
        name=name,
        enrolled=f["enrolled"],
        cohort_size=f.get("cohort_size"),
        students_served=f["students_served"],
        reach_rate=f["reach_rate"],
        sessions_requested=f["sessions_requested"],
        sessions_completed=f["sessions_completed"],
        sessions_per_student=ratio(f["sessions_completed"], base),
        rank=None,
    )


def reach_by_school(
    scope: Scope,
    names: dict[str, str | None],
    counts: dict[str, Counts],
    enrolled: dict[str, int],
    cohort: int | None,
    near: Near | None = None,
) -> Shown:
    """One participation answer per school (the listed ones, then any other school with
    requests in range), ranked by sessions completed per enrolled student, lowest first. The
    ranking uses only what the caller may see: a withheld rate is not ranked."""
    ids = list(names) + sorted(set(counts) - set(names))
    if scope.filters.school_id is not None:
        ids = [scope.filters.school_id]
    pairs = []
    for school in ids:
        before = None
        if near is not None:
            was = near.enrolment.get(scope.filters.date_to, {}).get(school, 0)
            before = (near.by_school.get(school, NONE), was, near.cohort)
        exact, shown = participation_pair(
            narrowed(scope, school_id=school), counts.get(school, NONE),
            enrolled.get(school, 0), cohort, before,
        )  # fmt: skip
        name = names.get(school)
        pairs.append((
            _reach_row(school, name, exact, cohort is not None),
            _reach_row(school, name, shown, cohort is not None),
        ))  # fmt: skip

    def order(pair: tuple[ReachRow, ReachRow]) -> tuple[bool, float, str]:
        rate = pair[1].sessions_per_student
        return (rate is None, rate or 0.0, (pair[1].name or pair[1].school_id).lower())

    pairs.sort(key=order)
    for rank, (exact_row, shown_row) in enumerate(pairs, start=1):
        if shown_row.sessions_per_student is not None:
            exact_row.rank = shown_row.rank = rank
    envelope = scope.envelope()
    return Shown.of(
        ReachBySchool(**envelope, rows=[e for e, _ in pairs]),
        ReachBySchool(**envelope, rows=[s for _, s in pairs]),
    )


def weeks_of(scope: Scope, by_week: dict[date, Counts]) -> list[date]:
    """The weeks engagement lists for the same filters: from the week of `from` (else of the
    first request) to the week of `to` (else of the last)."""
    asked = [week for week, counts in by_week.items() if counts[1]]
    f = scope.filters
    return mondays(f.date_from or min(asked, default=None), f.date_to or max(asked, default=None))


def week_ends(scope: Scope, weeks: list[date]) -> list[date]:
    last = scope.filters.date_to
    return [min(w + timedelta(days=6), last) if last else w + timedelta(days=6) for w in weeks]


def _running(by_week: dict[date, Counts], weeks: list[date]) -> list[Counts]:
    """Counts summed over every week up to and including each of `weeks`."""
    totals, out, found = [0] * 5, [], sorted(by_week.items())
    i = 0
    for week in weeks:
        while i < len(found) and found[i][0] <= week:
            totals = [a + b for a, b in zip(totals, found[i][1], strict=True)]
            i += 1
        s, r, m, c, x = totals
        out.append((s, r, m, c, x))
    return out


def reach_trend(
    scope: Scope,
    by_week: dict[date, Counts],
    enrolment: dict[date | None, dict[str, int]],
    cohort: int | None,
    near: Near | None = None,
) -> Shown:
    """Cumulative reach at the end of each week of the view: participation with `to` moved."""
    weeks = weeks_of(scope, by_week)
    ends = week_ends(scope, weeks)
    exact_rows: list[TrendRow] = []
    shown_rows: list[TrendRow] = []
    earlier = _running(near.by_week, weeks) if near is not None else [None] * len(weeks)
    rows_of = zip(weeks, ends, _running(by_week, weeks), earlier, strict=True)
    for week, through, counts, was in rows_of:
        at = narrowed(scope, date_to=through)
        before = None
        if near is not None and was is not None:
            before = (was, sum(near.enrolment.get(through, {}).values()), near.cohort)
        pair = participation_pair(at, counts, sum(enrolment[through].values()), cohort, before)
        for rows, p in zip((exact_rows, shown_rows), pair, strict=True):
            f = p.model_dump()
            rows.append(TrendRow(week=iso_week(week), week_start=week, through=through,
                                 **{k: f.get(k) for k in _TREND}))  # fmt: skip
    envelope = scope.envelope()
    return Shown.of(
        ReachTrend(**envelope, rows=exact_rows), ReachTrend(**envelope, rows=shown_rows)
    )


_TREND = ("enrolled", "cohort_size", "students_served", "reach_rate")
_MONTH = _TREND + ("sessions_requested", "sessions_completed")


@dataclass(frozen=True)
class Period:
    """A span of local dates: the view's, or the one of equal length just before it."""

    name: str  # "current" | "previous"
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def month_bounds(period: Period) -> list[tuple[date, date, date]]:
    """(month, first day, last day) of each month of the period, clipped to it; a month is
    the weeks that start in it (`reach.month_weeks`), so its rows are whole weeks."""
    start = period.start - timedelta(days=period.start.weekday())  # its week's month
    found = []
    for m in month_starts(start, period.end):
        first, last = month_weeks(m)
        first, last = max(first, period.start), min(last, period.end)
        if first <= last:
            found.append((m, first, last))
    return found


def use_by_month(
    scope: Scope,
    periods: list[Period],
    by_month: dict[tuple[date, bool], Counts],
    enrolment: dict[date | None, dict[str, int]],
    cohort: int | None,
    near: Near | None = None,
) -> Shown:
    """Participation of each month of each period (previous first), clipped to the period."""
    exact_rows: list[MonthRow] = []
    shown_rows: list[MonthRow] = []
    for period in periods:
        earlier = period.name == "previous"
        for month, first, last in month_bounds(period):
            at = narrowed(scope, date_from=first, date_to=last)
            counts = by_month.get((month, earlier), NONE)
            before = None
            if near is not None:
                was = near.by_month.get((month, earlier), NONE)
                before = (was, sum(near.enrolment.get(last, {}).values()), near.cohort)
            pair = participation_pair(at, counts, sum(enrolment[last].values()), cohort, before)
            for rows, p in zip((exact_rows, shown_rows), pair, strict=True):
                f = p.model_dump()
                rows.append(MonthRow(period=period.name, month=month.strftime("%Y-%m"),
                                     from_date=first, to_date=last,
                                     **{k: f.get(k) for k in _MONTH}))  # fmt: skip
    envelope = scope.envelope()
    return Shown.of(
        UseByMonth(**envelope, rows=exact_rows), UseByMonth(**envelope, rows=shown_rows)
    )


DEMAND_FIELDS = ("requests", "completed", "students", "share", "lift")


def drill_grades(
    scope: Scope,
    by_grade: dict[int, dict[str, Any] | None],
    near: dict[int, dict[str, Any] | None] | None = None,
) -> Shown:
    """Each grade's demand answer (its one row, or none) for the drilled school and subject,
    checked against the same grade at the previous published position when given."""
    exact_rows: list[GradeRow] = []
    shown_rows: list[GradeRow] = []

    def answer_of(at: Scope, row: dict[str, Any] | None) -> BaseModel:
        rows = [row] if row else []
        return ms.Demand.model_validate(
            {**at.envelope(), "group_by": ["school", "subject"], "rows": rows}
        )

    for grade, row in sorted(by_grade.items()):
        at = narrowed(scope, grade=grade)
        body = answer_of(at, row)
        before = None if near is None else [answer_of(at, near.get(grade))]
        for rows, answer in ((exact_rows, body), (shown_rows, at.protect(body, DEMAND, before))):
            found = answer.model_dump()["rows"]
            values = found[0] if found else {}
            rows.append(GradeRow(grade=grade, **{k: values.get(k) for k in DEMAND_FIELDS}))
    envelope = scope.envelope()
    return Shown.of(
        DrillGrades(**envelope, rows=exact_rows), DrillGrades(**envelope, rows=shown_rows)
    )
