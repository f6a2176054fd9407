"""A generated district with planted alert cases, for the dosage and alerts tests.

On top of metric_events.district (2026-10-12 … 2026-11-08, sch-03 asks for geometry far more
than the district: a hotspot), in the window ending AT = 2026-11-08:
- `sch-slow` waits an hour for every tutor in the last 7 days (long_waits);
- `sch-fall` has 20 active students in ISO week 2026-W42 and 6 in 2026-W45 (falling_use);
- student `s-algebra` asks for algebra 6 times in one week (repeated_subject);
- student `s-long` has a 3-hour session on 2026-11-06 (long_session).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from metric_events import TZ, district, envelope

AT = date(2026, 11, 8)
ZONE = ZoneInfo(TZ)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE)


def _session(
    d: str, sid: str, start: datetime, wait: timedelta, length: timedelta, **request: Any
) -> list[dict[str, Any]]:
    payload = {"school_id": "sch-01", "grade": 8, "subject": "algebra", **request}
    matched = start + wait
    return [
        envelope(d, sid, "requested", start.isoformat(), **payload),
        envelope(d, sid, "matched", matched.isoformat(), tutor_id="t-plant"),
        envelope(d, sid, "completed", (matched + length).isoformat(), outcome="resolved"),
    ]


def planted(d: str) -> list[dict[str, Any]]:
    """The planted sessions (each session's events in order)."""
    events: list[dict[str, Any]] = []
    quick, half_hour = timedelta(seconds=30), timedelta(minutes=30)
    for i in range(12):
        day = AT - timedelta(days=1 + i % 6)
        events += _session(d, f"slow-{i}", _at(day, 17, i), timedelta(hours=1), half_hour,
                           school_id="sch-slow", student_id=f"s-slow-{i}")  # fmt: skip
    for i in range(20):
        day = date(2026, 10, 12) + timedelta(days=i % 7)
        events += _session(d, f"fall-a-{i}", _at(day, 16, i), quick, half_hour,
                           school_id="sch-fall", student_id=f"s-fall-{i}")  # fmt: skip
    for i in range(6):
        day = date(2026, 11, 2) + timedelta(days=i)
        events += _session(d, f"fall-b-{i}", _at(day, 16, i), quick, half_hour,
                           school_id="sch-fall", student_id=f"s-fall-{i}")  # fmt: skip
    for i in range(6):
        day = date(2026, 11, 2) + timedelta(days=i)
        events += _session(d, f"algebra-{i}", _at(day, 19), quick, half_hour,
                           student_id="s-algebra")  # fmt: skip
    events += _session(d, "long-1", _at(date(2026, 11, 6), 16), timedelta(minutes=1),
                       timedelta(hours=3), student_id="s-long", subject="reading")  # fmt: skip
    return events


def insight_district(d: str, students: int = 400) -> list[dict[str, Any]]:
    """The generated district's events followed by the planted ones."""
    return district(d, students=students).events + planted(d)
