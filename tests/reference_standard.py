"""Independent plain-Python figures for the dosage standard, from accepted events.

Written from the metric's definition (docs/metrics.md), not from the SQL: sessions are
folded in Python (reference_metrics.fold), lengths are exact timedeltas, weeks come from
date.isocalendar() of the request's local date, school days are counted day by day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import reference_metrics as ref
from reference import student_of

US_MIN = 60_000_000
GROUP_FIELDS = {"school": "school_id", "subject": "subject", "grade": "grade"}


@dataclass(frozen=True)
class Rule:
    per_week: int = 3
    minutes: int = 30
    weeks: int = 10
    breaks: tuple[tuple[date, date], ...] = ()
    days: tuple[int, ...] = (1, 2, 3, 4, 5)


@dataclass
class Student:
    first: date
    per_week: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    sessions: int = 0


def length_us(s: ref.Session) -> int | None:
    if s.matched is None or s.completed_at is None:
        return None
    return (s.completed_at - s.matched) // timedelta(microseconds=1)


def monday(day: date) -> date:
    y, w, _ = day.isocalendar()
    return date.fromisocalendar(y, w, 1)


def school_days(week: date, rule: Rule) -> int:
    days = [week + timedelta(days=i) for i in range(7)]
    return sum(
        d.isoweekday() in rule.days and not any(a <= d <= b for a, b in rule.breaks) for d in days
    )


def judged(done: list[ref.Session], tz: str, **f: Any) -> list[date]:
    dates = [ref.local(s, tz).date() for s in done]
    first = f.get("date_from") or min(dates, default=None)
    last = f.get("date_to") or max(dates, default=None)
    if first is None or last is None:
        return []
    out, week = [], monday(first)
    while week <= monday(last):
        out.append(week)
        week += timedelta(days=7)
    return out


def students(
    done: list[ref.Session], tz: str, rule: Rule, key: Any = lambda s: ()
) -> dict[Any, dict[str, Student]]:
    found: dict[Any, dict[str, Student]] = defaultdict(dict)
    for s in done:
        week = monday(ref.local(s, tz).date())
        for k in key(s):
            st = found[k].setdefault(student_of(s.request), Student(week))
            st.first = min(st.first, week)
            st.sessions += 1
            st.per_week[week] += (length_us(s) or 0) >= rule.minutes * US_MIN
    return found


def status(st: Student, counted: list[date], rule: Rule) -> str:
    met = sum(st.per_week.get(w, 0) >= rule.per_week for w in counted)
    due = sum(w >= st.first for w in counted)
    if met >= rule.weeks:
        return "met"
    return "on_track" if met >= due else "short"


def standard(
    events: list[dict[str, Any]],
    district_id: str,
    tz: str,
    rule: Rule = Rule(),
    group_by: tuple[str, ...] = (),
    cohorts: dict[str, set[str]] | None = None,
    **f: Any,
) -> dict[str, Any]:
    """The metric's rows and weeks (group_by names: school, subject, grade, cohort)."""
    done = [s for s in ref.select(events, district_id, tz, **f) if length_us(s) is not None]
    weeks = judged(done, tz, **f)
    counted = [w for w in weeks if school_days(w, rule)]

    def key(s: ref.Session) -> list[tuple[Any, ...]]:
        plain = tuple(s.request[GROUP_FIELDS[g]] for g in group_by if g != "cohort")
        if "cohort" not in group_by:
            return [plain]
        mine = sorted(c for c, m in (cohorts or {}).items() if student_of(s.request) in m)
        return [_with_cohort(group_by, plain, c) for c in mine]

    grouped = students(done, tz, rule, key)
    keys = sorted(grouped) if group_by else [()]
    rows = []
    for k in keys:
        counts = {"met": 0, "on_track": 0, "short": 0}
        for st in grouped.get(k, {}).values():
            counts[status(st, counted, rule)] += 1
        named = dict(zip(group_by, k, strict=True))
        rows.append(
            {
                "school_id": named.get("school"),
                "subject": named.get("subject"),
                "grade": named.get("grade"),
                "cohort_id": named.get("cohort"),
                "student_group": None,  # by roster group / provider: test_dosage_standard_groups
                "provider": None,
                "students": sum(counts.values()),
                **counts,
            }
        )
    plain = students(done, tz, rule, lambda s: [()]).get((), {})
    series = [
        {
            "week": f"{w.isocalendar()[0]}-W{w.isocalendar()[1]:02d}",
            "week_start": w.isoformat(),
            "school_days": school_days(w, rule),
            "active_students": sum(w in st.per_week for st in plain.values()),
            "students_meeting_week": sum(
                st.per_week.get(w, 0) >= rule.per_week for st in plain.values()
            ),
        }
        for w in weeks
    ]
    return {"rows": rows, "weeks": series, "counted_weeks": len(counted)}


def _with_cohort(group_by: tuple[str, ...], plain: tuple[Any, ...], cohort: str) -> tuple[Any, ...]:
    """The group key in group_by's order with the cohort in its place."""
    values = list(plain)
    values.insert(group_by.index("cohort"), cohort)
    return tuple(values)


def short_students(
    events: list[dict[str, Any]], district_id: str, tz: str, rule: Rule = Rule(), **f: Any
) -> dict[str, tuple[int, int, int]]:
    """Student id → (met weeks, counted weeks since their first, sessions) of those short."""
    done = [s for s in ref.select(events, district_id, tz, **f) if length_us(s) is not None]
    counted = [w for w in judged(done, tz, **f) if school_days(w, rule)]
    out = {}
    for sid, st in students(done, tz, rule, lambda s: [()]).get((), {}).items():
        if status(st, counted, rule) == "short":
            met = sum(st.per_week.get(w, 0) >= rule.per_week for w in counted)
            out[sid] = (met, sum(w >= st.first for w in counted), st.sessions)
    return out
