"""Independent plain-Python figures for dosage and the early alerts, from accepted events.

Written from the route descriptions and docs/metrics.md, not from the SQL: sessions
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
from reference_overlap import reference as overlap_reference

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


def _days(at: date, days: int) -> dict[str, date]:
    return {"date_from": at - timedelta(days=days - 1), "date_to": at}


def school_alerts(events: list[dict[str, Any]], d: str, tz: str, at: date) -> list[dict[str, Any]]:
    """subject_hotspot, long_waits, falling_use and tutor_overlap with the default thresholds,
    in that order: (kind, scope, figures)."""
    out: list[dict[str, Any]] = []
    for row in ref.demand(events, d, tz, ("school", "subject"), **_days(at, 28)):
        if row["requests"] >= 20 and row["lift"] >= 2:
            scope = {"school_id": row["school_id"], "subject": row["subject"]}
            figures = {k: row[k] for k in ("requests", "students", "share", "lift")}
            out.append({"kind": "subject_hotspot", "scope": scope, "figures": figures})
    week = _days(at, 7)
    district = ref.wait_times(events, d, tz, **week)[0]["p90"]
    for row in ref.wait_times(events, d, tz, ("school",), **week):
        if district is not None and row["p90"] is not None and row["p90"] > 2 * district:
            figures = {"matched": row["matched"], "school_p90": row["p90"],
                       "district_p90": district, "ratio": row["p90"] / district}  # fmt: skip
            out.append({"kind": "long_waits", "scope": {"school_id": row["school_id"]},
                        "figures": figures})  # fmt: skip
    out += falling_use(events, d, tz, at)
    out += tutor_overlap(events, d, tz, at)
    return out


def tutor_overlap(events: list[dict[str, Any]], d: str, tz: str, at: date) -> list[dict[str, Any]]:
    """Tutors with ≥ 3 overlapping sessions making ≥ 0.1 of theirs in the last 28 days."""
    out = []
    for row in overlap_reference(events, d, tz, **_days(at, 28)):
        n, hit = row["sessions"], row["overlapping_sessions"]
        if hit >= 3 and Fraction(hit, n) >= Fraction(1, 10):
            scope = {"provider": row["provider"], "tutor_id": row["tutor_id"]}
            figures = {k: row[k] for k in ("sessions", "overlapping_sessions", "share",
                                           "highest_concurrency")}  # fmt: skip
            out.append({"kind": "tutor_overlap", "scope": scope, "figures": figures})
    return out


def falling_use(events: list[dict[str, Any]], d: str, tz: str, at: date) -> list[dict[str, Any]]:
    """Last complete ISO week on or before `at` against three weeks earlier."""
    last = at
    while last.isoweekday() != 7:  # the last Sunday on or before `at`
        last -= timedelta(days=1)
    after_week = last - timedelta(days=6)
    before_week = after_week - timedelta(weeks=3)
    active: dict[tuple[str, date], set[str]] = defaultdict(set)
    for s in ref.select(events, d, tz, date_from=before_week, date_to=last):
        active[(s.request["school_id"], _week(s, tz))].add(student_of(s.request))
    out = []
    for school in sorted({k[0] for k in active}):
        before = len(active.get((school, before_week), ()))
        after = len(active.get((school, after_week), ()))
        if before >= 10 and Fraction(before - after, before) >= Fraction(3, 10):
            figures = {
                "week_before": "{}-W{:02d}".format(*before_week.isocalendar()[:2]),
                "week_after": "{}-W{:02d}".format(*after_week.isocalendar()[:2]),
                "active_before": before,
                "active_after": after,
                "drop": (before - after) / before,
            }
            out.append({"kind": "falling_use", "scope": {"school_id": school}, "figures": figures})
    return out


def student_alerts(events: list[dict[str, Any]], d: str, tz: str, at: date) -> list[dict[str, Any]]:
    """repeated_subject and long_session: (kind, student id, subject, session ids, figures)."""
    out: list[dict[str, Any]] = []
    asked: dict[tuple[str, str], list[str]] = defaultdict(list)
    for s in ref.select(events, d, tz, **_days(at, 14)):
        asked[(student_of(s.request), s.request["subject"])].append(s.session_id)
    for (student, subject), ids in sorted(asked.items()):
        if len(ids) >= 5:
            out.append({"kind": "repeated_subject", "student": student, "subject": subject,
                        "session_ids": sorted(ids), "figures": {"requests": len(ids)}})  # fmt: skip
    baseline = [us for s in ref.select(events, d, tz, **_days(at, 28))
                if (us := _length_us(s)) is not None]  # fmt: skip
    if not baseline:
        return out
    p99 = ref.nearest_rank(baseline, 99)
    for s in ref.select(events, d, tz, **_days(at, 7)):
        us = _length_us(s)
        if us is not None and us > p99:
            out.append({"kind": "long_session", "student": student_of(s.request),
                        "subject": s.request["subject"], "session_ids": [s.session_id],
                        "figures": {"length_minutes": float(Fraction(us, US_MIN)),
                                    "district_percentile_minutes": float(Fraction(p99, US_MIN)),
                                    "baseline_sessions": len(baseline)}})  # fmt: skip
    return out
