"""Independent pure-Python figures for every metric of docs/contract.md, from accepted events.

Written from the definitions in the route descriptions, not from the SQL: sessions are folded
in plain Python, local times come from zoneinfo, percentiles use exact fractions.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from reference import student_of


@dataclass
class Session:
    request: dict[str, Any]
    requested: datetime
    matched: datetime | None = None
    completed: bool = False
    completed_at: datetime | None = None
    session_id: str = ""
    cancelled: bool = False
    survey: dict[str, Any] | None = None
    provider: str = ""  # the request's provenance provider ('' when it names none)


def fold(events: list[dict[str, Any]], district_id: str) -> list[Session]:
    """Sessions of one district; the first event of each kind wins (resends are ignored)."""
    sessions: dict[str, Session] = {}
    for e in events:
        if e["district_id"] != district_id:
            continue
        at = datetime.fromisoformat(e["occurred_at"])
        kind = e["type"].removeprefix("session.")
        s = sessions.get(e["session_id"])
        if kind == "requested":
            if s is None:
                provider = (e.get("provenance") or {}).get("provider", "")
                sessions[e["session_id"]] = Session(
                    dict(e["payload"]), at, session_id=e["session_id"], provider=provider
                )
        elif s is None:
            continue
        elif kind == "matched" and s.matched is None:
            s.matched = at
        elif kind == "completed":
            s.completed = True
            s.completed_at = s.completed_at or at
        elif kind == "cancelled":
            s.cancelled = True
        elif kind == "surveyed" and s.survey is None:
            s.survey = dict(e["payload"])
    return list(sessions.values())


def local(s: Session, tz: str) -> datetime:
    return s.requested.astimezone(ZoneInfo(tz))


def select(
    events: list[dict[str, Any]],
    district_id: str,
    tz: str,
    school_id: str | None = None,
    subject: str | None = None,
    grade: int | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    provider: str | None = None,
) -> list[Session]:
    """Sessions matching the filters; a session belongs to its request's local date."""
    out = []
    for s in fold(events, district_id):
        day = local(s, tz).date()
        if provider is not None and s.provider != provider:
            continue
        if school_id is not None and s.request["school_id"] != school_id:
            continue
        if subject is not None and s.request["subject"] != subject:
            continue
        if grade is not None and s.request["grade"] != grade:
            continue
        if (date_from and day < date_from) or (date_to and day > date_to):
            continue
        out.append(s)
    return out


def _groups(sessions: list[Session], group_by: tuple[str, ...]) -> dict[tuple[Any, ...], list]:  # type: ignore[type-arg]
    """Sessions by group key (school_id, subject), None where not grouped; sorted by key."""
    found: dict[tuple[Any, ...], list[Session]] = defaultdict(list)
    for s in sessions:
        school = s.request["school_id"] if "school" in group_by else None
        subject = s.request["subject"] if "subject" in group_by else None
        provider = s.provider if "provider" in group_by else None
        found[(school, subject, provider)].append(s)
    if not group_by:
        found.setdefault((None, None, None), [])
    return dict(sorted(found.items(), key=lambda kv: tuple(k or "" for k in kv[0])))


def _key(k: tuple[Any, ...]) -> dict[str, Any]:
    return {"school_id": k[0], "subject": k[1], "student_group": None, "provider": k[2]}


def demand(
    events: list[dict[str, Any]],
    district_id: str,
    tz: str,
    group_by: tuple[str, ...] = ("school", "subject"),
    **f: Any,
) -> list[dict[str, Any]]:
    chosen = select(events, district_id, tz, **f)
    wide = select(
        events,
        district_id,
        tz,
        grade=f.get("grade"),
        date_from=f.get("date_from"),
        date_to=f.get("date_to"),
        provider=f.get("provider"),
    )
    rows = []
    for (school, subject, provider), group in _groups(chosen, group_by).items():
        scope_school = school if "school" in group_by else f.get("school_id")
        scope_subject = subject if "subject" in group_by else f.get("subject")
        in_school = [s for s in wide if scope_school in (None, s.request["school_id"])]
        share = _count(in_school, scope_subject) / len(in_school)
        district_share = _count(wide, scope_subject) / len(wide)
        rows.append(
            {
                **_key((school, subject, provider)),
                "requests": len(group),
                "completed": sum(s.completed for s in group),
                "students": len({student_of(s.request) for s in group}),
                "share": share,
                "lift": share / district_share,
            }
        )
    return rows


def _count(sessions: list[Session], subject: str | None) -> int:
    return sum(subject in (None, s.request["subject"]) for s in sessions)


def nearest_rank(values: list[int], percent: int) -> int:
    """The smallest value with at least `percent`% of values at or below it."""
    rank = math.ceil(Fraction(percent, 100) * len(values))
    return sorted(values)[max(rank, 1) - 1]


def wait_times(
    events: list[dict[str, Any]],
    district_id: str,
    tz: str,
    group_by: tuple[str, ...] = (),
    **f: Any,
) -> list[dict[str, Any]]:
    rows = []
    for key, group in _groups(select(events, district_id, tz, **f), group_by).items():
        waits = [
            (s.matched - s.requested) // timedelta(microseconds=1)
            for s in group
            if s.matched is not None
        ]
        stats: dict[str, float | None] = {
            f"p{p}": nearest_rank(waits, p) / 1_000_000 if waits else None for p in (50, 90, 99)
        }
        stats["max"] = max(waits) / 1_000_000 if waits else None
        rows.append(
            {
                **_key(key),
                "requests": len(group),
                "matched": len(waits),
                "unmatched": len(group) - len(waits),
                **stats,
            }
        )
    return rows


def satisfaction(
    events: list[dict[str, Any]],
    district_id: str,
    tz: str,
    group_by: tuple[str, ...] = (),
    **f: Any,
) -> list[dict[str, Any]]:
    rows = []
    for key, group in _groups(select(events, district_id, tz, **f), group_by).items():
        surveys = [s.survey for s in group if s.survey is not None]
        completed = sum(s.completed for s in group)
        helped = sum(bool(v["helped"]) for v in surveys)
        n = len(surveys)
        rows.append(
            {
                **_key(key),
                "completed": completed,
                "surveys": n,
                "helped": helped,
                "helped_rate": helped / n if n else None,
                "mean_rating": sum(v["rating"] for v in surveys) / n if n else None,
                "survey_rate": n / completed if completed else None,
            }
        )
    return rows


DEFAULT_HOURS = {"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "15:30"}


def timing(
    events: list[dict[str, Any]],
    district_id: str,
    tz: str,
    hours: dict[str, Any] | None = None,
    **f: Any,
) -> dict[str, Any]:
    hours = hours or DEFAULT_HOURS
    start = datetime.strptime(hours["start"], "%H:%M").time()
    end = datetime.strptime(hours["end"], "%H:%M").time()
    cells: Counter[tuple[int, int]] = Counter()
    inside: Counter[tuple[int, int]] = Counter()
    for s in select(events, district_id, tz, **f):
        t = local(s, tz)
        cell = (t.isoweekday(), t.hour)
        cells[cell] += 1
        inside[cell] += t.isoweekday() in hours["days"] and start <= t.time() < end
    total = sum(cells.values())
    after = total - sum(inside.values())
    return {
        "requests": total,
        "after_school_requests": after,
        "after_school_share": after / total if total else None,
        "by_hour": [
            {"hour": h, "requests": sum(n for (_, hh), n in cells.items() if hh == h)}
            for h in range(24)
        ],
        "by_weekday": [
            {"weekday": d, "requests": sum(n for (dd, _), n in cells.items() if dd == d)}
            for d in range(1, 8)
        ],
        "rows": [
            {
                "weekday": d,
                "hour": h,
                "requests": cells[(d, h)],
                "in_school_requests": inside[(d, h)],
            }
            for d in range(1, 8)
            for h in range(24)
        ],
    }


def engagement(events: list[dict[str, Any]], district_id: str, tz: str, **f: Any) -> dict[str, Any]:
    chosen = select(events, district_id, tz, **f)
    weeks: dict[tuple[int, int], set[str]] = defaultdict(set)
    requests: Counter[tuple[int, int]] = Counter()
    per_student: dict[str, set[tuple[int, int]]] = defaultdict(set)
    sessions: Counter[str] = Counter()
    for s in chosen:
        week = tuple(local(s, tz).date().isocalendar())[:2]
        student = student_of(s.request)
        weeks[week].add(student)  # type: ignore[index]
        requests[week] += 1  # type: ignore[index]
        per_student[student].add(week)  # type: ignore[arg-type]
        sessions[student] += 1
    days = [local(s, tz).date() for s in chosen]
    first = f.get("date_from") or min(days, default=None)
    last = f.get("date_to") or max(days, default=None)
    span: list[tuple[int, int]] = []
    day = first
    while day is not None and last is not None and day <= last:
        week = tuple(day.isocalendar())[:2]
        if week not in span:
            span.append(week)  # type: ignore[arg-type]
        day += timedelta(days=1)
    return {
        "students": len(per_student),
        "regular_students": sum(len(w) >= 3 for w in per_student.values()),
        "one_time_students": sum(n == 1 for n in sessions.values()),
        "rows": [
            {
                "week": f"{y}-W{w:02d}",
                "week_start": date.fromisocalendar(y, w, 1).isoformat(),
                "weekly_active_students": len(weeks.get((y, w), ())),
                "requests": requests[(y, w)],
            }
            for y, w in span
        ],
    }


def in_cohort(events: list[dict[str, Any]], students: set[str]) -> list[dict[str, Any]]:
    """The events of sessions whose request names one of `students` (the cohort's members):
    every figure restricted to a cohort is the same figure over these events."""
    chosen = {
        (e["district_id"], e["session_id"])
        for e in events
        if e["type"] == "session.requested" and student_of(e["payload"]) in students
    }
    return [e for e in events if (e["district_id"], e.get("session_id")) in chosen]


def outcome_bands(
    grades: dict[str, tuple[float, float]], completed_in_window: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Per usage band: students, mean earlier and later grade, mean change (exact fractions)."""
    bands: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for student, (before, after) in grades.items():
        n = completed_in_window.get(student, 0)
        band = "none" if n == 0 else "1-2" if n <= 2 else "3-9" if n <= 9 else "10+"
        bands[band].append((before, after))
    out = {}
    for band in ("none", "1-2", "3-9", "10+"):
        pairs = bands.get(band, [])
        k = len(pairs)

        def mean(values: list[float], k: int = k) -> float | None:
            return round(float(sum(Fraction(v) for v in values) / k), 6) if k else None

        out[band] = {
            "band": band,
            "students": k,
            "mean_from": mean([a for a, _ in pairs]),
            "mean_to": mean([b for _, b in pairs]),
            "mean_change": mean([b - a for a, b in pairs]),
        }
    return out


# -- headline figures per group (participation, timing, engagement, dosage with group_by) ------


def _per_group(
    events: list[dict[str, Any]], district_id: str, tz: str, group_by: tuple[str, ...],
    figures: Any, **f: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """`figures(sessions)` per group of the selected sessions (only groups with a session)."""
    found = _groups(select(events, district_id, tz, **f), group_by)
    return [{**_key(k), **figures(group)} for k, group in found.items() if group or not group_by]


def participation_groups(
    events: list[dict[str, Any]], district_id: str, tz: str, group_by: tuple[str, ...], **f: Any
) -> list[dict[str, Any]]:
    def figures(group: list[Session]) -> dict[str, Any]:
        served = len({student_of(s.request) for s in group})
        return {
            "students_served": served,
            "sessions_requested": len(group),
            "sessions_matched": sum(s.matched is not None for s in group),
            "sessions_completed": sum(s.completed for s in group),
            "sessions_cancelled": sum(s.cancelled for s in group),
            "sessions_per_served_student": len(group) / served if served else None,
        }

    return _per_group(events, district_id, tz, group_by, figures, **f)


def timing_groups(
    events: list[dict[str, Any]], district_id: str, tz: str, group_by: tuple[str, ...], **f: Any
) -> list[dict[str, Any]]:
    start = datetime.strptime(DEFAULT_HOURS["start"], "%H:%M").time()  # type: ignore[arg-type]
    end = datetime.strptime(DEFAULT_HOURS["end"], "%H:%M").time()  # type: ignore[arg-type]

    def figures(group: list[Session]) -> dict[str, Any]:
        times = [local(s, tz) for s in group]
        inside = sum(t.isoweekday() in DEFAULT_HOURS["days"] and start <= t.time() < end
                     for t in times)  # fmt: skip
        after = len(group) - inside
        return {
            "requests": len(group),
            "in_school_requests": inside,
            "after_school_requests": after,
            "after_school_share": after / len(group) if group else None,
        }

    return _per_group(events, district_id, tz, group_by, figures, **f)


def engagement_groups(
    events: list[dict[str, Any]], district_id: str, tz: str, group_by: tuple[str, ...], **f: Any
) -> list[dict[str, Any]]:
    def figures(group: list[Session]) -> dict[str, Any]:
        weeks: dict[str, set[tuple[int, int]]] = defaultdict(set)
        n: Counter[str] = Counter()
        for s in group:
            weeks[student_of(s.request)].add(tuple(local(s, tz).date().isocalendar())[:2])  # type: ignore[arg-type]
            n[student_of(s.request)] += 1
        return {
            "students": len(n),
            "regular_students": sum(len(w) >= 3 for w in weeks.values()),
            "one_time_students": sum(v == 1 for v in n.values()),
            "requests": len(group),
        }

    return _per_group(events, district_id, tz, group_by, figures, **f)


def dosage_groups(
    events: list[dict[str, Any]], district_id: str, tz: str, group_by: tuple[str, ...], **f: Any
) -> list[dict[str, Any]]:
    """Per group of completed sessions (matched, then completed): length = completion − match."""
    us_per_minute = 60_000_000

    def figures(group: list[Session]) -> dict[str, Any]:
        done = [s for s in group if s.completed and s.matched is not None]
        lengths = [(s.completed_at - s.matched) // timedelta(microseconds=1) for s in done]  # type: ignore[operator]
        n, total = len(lengths), sum(lengths)
        served = len({student_of(s.request) for s in done})
        return {
            "sessions_completed": n,
            "students_served": served,
            "minutes": total / us_per_minute,
            "minutes_per_student": total / (served * us_per_minute) if n else None,
            "length_mean": total / (n * us_per_minute) if n else None,
            **{
                f"length_p{p}": nearest_rank(lengths, p) / us_per_minute if n else None
                for p in (50, 90, 99)
            },  # fmt: skip
            "length_max": max(lengths) / us_per_minute if n else None,
        }

    rows = _per_group(events, district_id, tz, group_by, figures, **f)
    return [r for r in rows if r["sessions_completed"] or not group_by]
