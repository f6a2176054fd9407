"""Independent plain-Python figures for dosage and the early alerts, from accepted events.

Written from the route descriptions and the README's definitions, not from the SQL: sessions
are folded in Python (reference_metrics.fold), lengths are exact timedeltas, percentiles use
exact fractions, weeks come from date.isocalendar().
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

import reference_metrics as ref
from reference import student_of

US_MIN = 60_000_000


def _length_us(s: ref.Session) -> int | None:
    if s.matched is None or s.completed_at is None:
        return None
    return (s.completed_at - s.matched) // timedelta(microseconds=1)


def _week(s: ref.Session, tz: str) -> date:
    y, w, _ = ref.local(s, tz).date().isocalendar()
    return date.fromisocalendar(y, w, 1)


def dosage(
    events: list[dict[str, Any]], district_id: str, tz: str, target: int = 60, **f: Any
) -> dict[str, Any]:
    done = [s for s in ref.select(events, district_id, tz, **f) if _length_us(s) is not None]
    lengths = [_length_us(s) or 0 for s in done]
    n, total = len(lengths), sum(lengths)
    students = {student_of(s.request) for s in done}
    per: dict[date, Counter[str]] = defaultdict(Counter)
    for s, us in zip(done, lengths, strict=True):
        per[_week(s, tz)][student_of(s.request)] += us
    first = f.get("date_from") or min((ref.local(s, tz).date() for s in done), default=None)
    last = f.get("date_to") or max((ref.local(s, tz).date() for s in done), default=None)
    rows = []
    if first is not None and last is not None:
        week = first - timedelta(days=first.weekday())
        while week <= last:
            got = per.get(week, Counter())
            rows.append(
                {
                    "week": f"{week.isocalendar()[0]}-W{week.isocalendar()[1]:02d}",
                    "week_start": week.isoformat(),
                    "active_students": len(got),
                    "minutes": float(Fraction(sum(got.values()), US_MIN)),
                    "students_meeting_target": sum(v >= target * US_MIN for v in got.values()),
                }
            )
            week += timedelta(days=7)

    def pick(p: int) -> float | None:
        return float(Fraction(ref.nearest_rank(lengths, p), US_MIN)) if n else None

    return {
        "sessions_completed": n,
        "students_served": len(students),
        "minutes": float(Fraction(total, US_MIN)),
        "minutes_per_student": float(Fraction(total, US_MIN * len(students))) if n else None,
        "length_mean": float(Fraction(total, US_MIN * n)) if n else None,
        "length_p50": pick(50),
        "length_p90": pick(90),
        "length_p99": pick(99),
        "length_max": float(Fraction(max(lengths), US_MIN)) if n else None,
        "target_minutes": target,
        "rows": rows,
    }
