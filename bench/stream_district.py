"""A large synthetic district streamed in time order: memory holds a few days, not the years.

Same shapes as bench.district (schools, hotspot, lifecycle fates, late surveys), but events
are produced day by day through a heap of pending steps, already in canonical form (UTC
instants), with no resends, so millions of events can be projected without a ledger.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from tutorledger.bench.district import HOTSPOT_SUBJECT, SUBJECTS, follow

EVENTS_PER_SESSION = 3.4  # measured on bench.district's fates
NO_CUTOFF = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class StreamSpec:
    district_id: str = "bench-d"
    schools: int = 68
    students: int = 50_000
    days: int = 900  # five school years of 180 days
    sessions: int = 300_000
    start: date = date(2022, 9, 5)
    tz: str = "America/New_York"
    seed: int = 7


def spec_for(size: int) -> StreamSpec:
    """About `size` events: ≈ 2 M a year for 50 k students, so 10 M spans five years."""
    years = max(1, round(size / 2_000_000))
    return StreamSpec(days=180 * years, sessions=round(size / EVENTS_PER_SESSION))


def _request_minute(rng: random.Random, weekday: int) -> int:
    if weekday >= 5 or rng.random() < 0.62:
        return rng.randint(15 * 60 + 31, 22 * 60 + 30)
    return rng.randint(8 * 60, 15 * 60 + 29)


class _Emitter:
    """Queues a session's events by time; the heap releases them in order."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.ns = uuid5(UUID(int=0), f"{spec.district_id}/stream/{spec.seed}")
        self.heap: list[tuple[datetime, int, dict[str, Any]]] = []
        self.counter = 0

    def emit(self, kind: str, session: str, at: datetime, payload: dict[str, Any]) -> None:
        self.counter += 1
        event = {
            "event_id": str(uuid5(self.ns, f"{session}/{kind}")),
            "type": f"session.{kind}",
            "schema_version": 1,
            "district_id": self.spec.district_id,
            "session_id": session,
            "occurred_at": at.isoformat(),
            "payload": payload,
        }
        heapq.heappush(self.heap, (at, self.counter, event))

    def release(self, before: datetime) -> Iterator[dict[str, Any]]:
        while self.heap and self.heap[0][0] < before:
            yield heapq.heappop(self.heap)[2]


def _session(out: _Emitter, rng: random.Random, sid: str, requested: datetime,
             payload: dict[str, Any]) -> None:  # fmt: skip
    """One session's lifecycle, with bench.district's fates (surveys never cut off)."""
    out.emit("requested", sid, requested, payload)
    follow(rng, out.emit, sid, requested, NO_CUTOFF)


def stream(spec: StreamSpec) -> Iterator[dict[str, Any]]:
    """Every event of the district in time order (canonical envelopes, UTC instants)."""
    rng = random.Random(spec.seed)
    tz = ZoneInfo(spec.tz)
    names, weights = zip(*SUBJECTS, strict=True)
    grades = [rng.randint(0, 12) for _ in range(spec.students)]
    hotspot = f"sch-{min(3, spec.schools):02d}"
    out = _Emitter(spec)
    per_day = spec.sessions / spec.days
    n = 0
    for offset in range(spec.days + 4):
        day = spec.start + timedelta(days=offset)
        midnight = datetime.combine(day, time(), tzinfo=tz)
        if offset < spec.days:
            for _ in range(int(per_day) + (rng.random() < per_day % 1)):
                student = rng.randrange(spec.students)
                school = f"sch-{student % spec.schools + 1:02d}"
                minute = _request_minute(rng, day.weekday())
                at = midnight + timedelta(minutes=minute, seconds=rng.randint(0, 59))
                at = (at + timedelta(microseconds=rng.randint(0, 999) * 1000)).astimezone(UTC)
                hot = school == hotspot and rng.random() < 0.5
                payload = {
                    "school_id": school,
                    "student_id": f"stu-{student + 1:06d}",
                    "grade": grades[student],
                    "subject": HOTSPOT_SUBJECT if hot else rng.choices(names, weights)[0],
                }
                n += 1
                _session(out, rng, f"s{n:09d}", at, payload)
        yield from out.release((midnight + timedelta(days=1)).astimezone(UTC))
    yield from out.release(datetime.max.replace(tzinfo=UTC))
