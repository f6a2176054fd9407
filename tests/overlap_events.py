"""Sessions of two providers with planted tutor overlaps (and near misses), as raw envelopes
each tagged with the provenance the ledger would store for its emitter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from builders import envelope

BASE = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # a Monday, 09:00 in New York
PROVIDERS = ("vendor-a", "inhouse")


def _iso(at: datetime) -> str:
    return at.isoformat()


def session(
    district: str, sid: str, provider: str, tutor: str, start: datetime, minutes: float,
    *, school: str = "sch-1", subject: str = "algebra", student: str = "stu-1",
    wait: timedelta = timedelta(minutes=2),
) -> list[dict[str, Any]]:  # fmt: skip
    """requested → matched (`wait` later) → completed (`minutes` later), provenance-tagged."""
    requested = start - wait
    end = start + timedelta(minutes=minutes)
    events = [
        envelope(district, sid, "requested", _iso(requested),
                 {"school_id": school, "student_id": student, "grade": 5, "subject": subject}),
        envelope(district, sid, "matched", _iso(start), {"tutor_id": tutor}),
        envelope(district, sid, "completed", _iso(end), {"outcome": "resolved"}),
    ]  # fmt: skip
    for e in events:
        e["provenance"] = {"provider": provider}
    return events


def planted(district: str) -> list[dict[str, Any]]:
    """Hand-placed cases, then random sessions; every edge the audit must get right:
    - t-edge: 10:00-10:30 and 10:30:00-11:00 meet at the same second: no overlap; a third
      at 10:45-11:15 overlaps the second only;
    - t-same: two identical intervals overlap (concurrency 2); under the other provider the
      same tutor id at the same time is another tutor (no overlap);
    - t-three: three sessions at once (concurrency 3), one of them a week later alone;
    - t-micro: the next session starts one microsecond before the previous ends: overlap."""
    at = BASE.replace(hour=15)
    a, b = PROVIDERS
    m = timedelta(minutes=1)
    events = [
        *session(district, "edge-1", a, "t-edge", at, 30, student="stu-1"),
        *session(district, "edge-2", a, "t-edge", at + timedelta(minutes=30), 30, student="stu-2"),
        *session(district, "edge-3", a, "t-edge", at + timedelta(minutes=45), 30, student="stu-3"),
        *session(district, "same-1", a, "t-same", at, 20, student="stu-4"),
        *session(district, "same-2", a, "t-same", at, 20, student="stu-5"),
        *session(district, "same-3", b, "t-same", at, 20, student="stu-6"),
        *session(district, "three-1", b, "t-three", at, 60, student="stu-7"),
        *session(district, "three-2", b, "t-three", at + 10 * m, 20, student="stu-8"),
        *session(district, "three-3", b, "t-three", at + 15 * m, 30, student="stu-9"),
        *session(district, "three-4", b, "t-three", at + timedelta(days=7), 30, student="stu-7"),
        *session(district, "micro-1", a, "t-micro", at, 30, student="stu-1"),
        *session(district, "micro-2", a, "t-micro",
                 at + timedelta(minutes=30) - timedelta(microseconds=1), 30, student="stu-2"),
    ]  # fmt: skip
    rng = random.Random(26)
    for i in range(60):
        start = BASE + timedelta(days=rng.randrange(14), minutes=rng.randrange(0, 480, 5))
        events += session(
            district, f"r-{i}", rng.choice(PROVIDERS), f"t-r{rng.randrange(4)}", start,
            rng.choice((15, 30, 45)), student=f"stu-r{rng.randrange(20)}",
            subject=rng.choice(("algebra", "geometry")), school=rng.choice(("sch-1", "sch-2")),
        )  # fmt: skip
    # A session requested but never completed, and one cancelled: not in the audit.
    events.append(envelope(district, "open-1", "requested", _iso(at),
                           {"school_id": "sch-1", "student_id": "stu-1", "grade": 5,
                            "subject": "algebra"}))  # fmt: skip
    events[-1]["provenance"] = {"provider": a}
    return events


def by_provider(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The envelopes each provider's emitter posts (provenance tags removed: the ledger adds
    them), in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        body = {k: v for k, v in e.items() if k != "provenance"}
        out.setdefault(e["provenance"]["provider"], []).append(body)
    return out
