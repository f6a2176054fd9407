"""Event sets for the metric tests: a generated district across a DST change, and hand-made
edge cases (ambiguous DST hour, local midnight, school-hour edges, sub-second waits, ISO week
edges, late surveys), delivered in batches that split sessions and reorder across sessions."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import builders

from tutorledger.bench.district import District, DistrictSpec, generate

TZ = "America/New_York"
# 2026-10-12 … 2026-11-08: US DST ends on 2026-11-01 inside the range.
DST_START = date(2026, 10, 12)


def district(district_id: str, students: int = 400, tz: str = TZ, seed: int = 7) -> District:
    spec = DistrictSpec(
        district_id=district_id,
        schools=4,
        students=students,
        days=28,
        start=DST_START,
        tz=tz,
        seed=seed,
    )
    return generate(spec)


def envelope(district_id: str, session: str, kind: str, at: str, **payload: Any) -> dict[str, Any]:
    event_id = str(uuid5(NAMESPACE_URL, f"{district_id}/{session}/{kind}"))
    return builders.envelope(district_id, session, kind, at, payload, event_id)


def _request(d: str, session: str, at: str, student: str, **extra: Any) -> dict[str, Any]:
    payload = {"school_id": "sch-e1", "student_id": student, "grade": 5, "subject": "algebra"}
    payload.update(extra)
    return envelope(d, session, "requested", at, **payload)


def edge_batches(d: str) -> list[list[dict[str, Any]]]:
    """Valid events in delivery batches; later batches carry late steps and resends."""
    r, e = _request, envelope
    first = [
        # Autumn DST day: 01:30 EDT, then 01:20 EST (later instant, same local hour 1).
        r(d, "dst-a", "2026-11-01T01:30:00.250000-04:00", "s-dst"),
        r(d, "dst-b", "2026-11-01T01:20:00-05:00", "s-dst", subject="geometry"),
        e(d, "dst-a", "matched", "2026-11-01T01:10:00.750000-05:00", tutor_id="t1"),
        # Just before local midnight on a Saturday; matched after it (UTC says Sunday).
        r(d, "midnight", "2026-10-31T23:59:59.999500-04:00", "s-night", grade=11),
        e(d, "midnight", "matched", "2026-11-01T00:00:00.200000-04:00", tutor_id="t2"),
        # School-hour edges on Tuesday 2026-10-27: [08:00, 15:30) is in school.
        r(d, "edge-0759", "2026-10-27T07:59:59.999999-04:00", "s-edge"),
        r(d, "edge-0800", "2026-10-27T08:00:00-04:00", "s-edge"),
        r(d, "edge-1529", "2026-10-27T15:29:59.999999-04:00", "s-edge2", school_id="sch-e2"),
        r(d, "edge-1530", "2026-10-27T15:30:00-04:00", "s-edge2", school_id="sch-e2"),
        # Sunday 23:30 local is Monday in UTC: still the Sunday's ISO week (2026-W44).
        r(d, "week-end", "2026-11-01T23:30:00-05:00", "s-week", subject="reading"),
        # Sub-second wait across a second boundary: 0.2 s.
        r(d, "subsec", "2026-10-28T16:00:00.900000-04:00", "s-sub"),
        # Never matched; cancelled before a match; cancelled after one.
        r(d, "waiting", "2026-10-29T17:00:00-04:00", "s-wait"),
        r(d, "cancel-early", "2026-10-29T17:05:00-04:00", "s-wait"),
        r(d, "cancel-late", "2026-10-29T17:10:00-04:00", "s-wait"),
    ]
    second = [
        # Out of order across sessions: later sessions' steps before earlier ones'.
        e(d, "cancel-late", "matched", "2026-10-29T17:12:30-04:00", tutor_id="t3"),
        e(d, "subsec", "matched", "2026-10-28T16:00:01.100000-04:00", tutor_id="t4"),
        e(d, "cancel-early", "cancelled", "2026-10-29T17:20:00-04:00", reason="timeout"),
        e(d, "cancel-late", "cancelled", "2026-10-29T17:15:00-04:00", reason="student_left"),
        e(d, "midnight", "completed", "2026-11-01T00:40:00-04:00", outcome="resolved"),
        e(d, "dst-a", "completed", "2026-11-01T01:50:00-05:00", outcome="partial"),
        # A regular student (3 ISO weeks) and a two-week one.
        r(d, "reg-1", "2026-10-13T18:00:00-04:00", "s-regular", subject="reading"),
        r(d, "reg-2", "2026-10-21T18:00:00-04:00", "s-regular", subject="reading"),
        r(d, "reg-3", "2026-11-04T18:00:00-05:00", "s-regular", subject="reading"),
        r(d, "two-1", "2026-10-13T18:00:00-04:00", "s-two"),
        r(d, "two-2", "2026-10-14T09:00:00-04:00", "s-two"),
        r(d, "two-3", "2026-10-19T09:00:00-04:00", "s-two"),
    ]
    third = [
        *first[:2],  # resends: duplicates, counted once
        e(d, "subsec", "completed", "2026-10-28T16:30:00-04:00", outcome="resolved"),
        # Late surveys, days after the session (and after the end of the range).
        e(d, "midnight", "surveyed", "2026-11-06T10:00:00-05:00", helped=True, rating=5),
        e(d, "subsec", "surveyed", "2026-11-12T10:00:00-05:00", helped=False, rating=2),
    ]
    return [first, second, third]


def interleave(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Shuffle across sessions while keeping each session's own events in order."""
    slots = list(range(len(events)))
    rng.shuffle(slots)
    by_session: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, event in enumerate(events):
        by_session[(event["district_id"], event["session_id"])].append(i)
    order: list[dict[str, Any]] = [{}] * len(events)
    for indexes in by_session.values():
        for slot, i in zip(sorted(slots[j] for j in indexes), indexes, strict=True):
            order[slot] = events[i]
    return order


def retarget(events: list[dict[str, Any]], district_id: str) -> list[dict[str, Any]]:
    """The same events for another district id (fresh event ids, same bodies)."""
    out = []
    for event in events:
        copy = dict(event, district_id=district_id)
        copy["event_id"] = str(uuid5(NAMESPACE_URL, f"{district_id}/{event['event_id']}"))
        out.append(copy)
    return out
