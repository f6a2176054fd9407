"""The tutor-overlap audit written out independently: every pair compared, concurrency
counted at every start, from raw envelopes (first event of each kind wins)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo


@dataclass
class Done:
    """A completed session with a match: its tutor, provider and interval."""

    session_id: str
    provider: str
    tutor_id: str
    matched: datetime
    completed: datetime
    requested: datetime


def completed_sessions(events: list[dict[str, Any]], district_id: str) -> list[Done]:
    requests: dict[str, tuple[datetime, str]] = {}
    matches: dict[str, tuple[datetime, str]] = {}
    done: dict[str, datetime] = {}
    for e in events:
        if e["district_id"] != district_id:
            continue
        sid, at = e["session_id"], datetime.fromisoformat(e["occurred_at"])
        kind = e["type"].removeprefix("session.")
        if kind == "requested" and sid not in requests:
            requests[sid] = (at, (e.get("provenance") or {}).get("provider", ""))
        elif kind == "matched" and sid in requests and sid not in matches:
            matches[sid] = (at, e["payload"]["tutor_id"])
        elif kind == "completed" and sid in matches and sid not in done:
            done[sid] = at
    return [
        Done(sid, requests[sid][1], matches[sid][1], matches[sid][0], at, requests[sid][0])
        for sid, at in done.items()
    ]


def overlaps(a: Done, b: Done) -> bool:
    return a.matched < b.completed and b.matched < a.completed


def reference(
    events: list[dict[str, Any]],
    district_id: str,
    tz: str,
    provider: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[dict[str, Any]]:
    """Per (provider, tutor), sorted: the audit's figures, by brute force."""
    zone = ZoneInfo(tz)
    groups: dict[tuple[str, str], list[Done]] = defaultdict(list)
    for s in completed_sessions(events, district_id):
        day = s.requested.astimezone(zone).date()
        if provider is not None and s.provider != provider:
            continue
        if (date_from and day < date_from) or (date_to and day > date_to):
            continue
        groups[(s.provider, s.tutor_id)].append(s)
    out = []
    for (p, tutor), group in sorted(groups.items()):
        hit = {a.session_id for a in group for b in group if a is not b and overlaps(a, b)}
        concurrency = max(sum(b.matched <= a.matched < b.completed for b in group) for a in group)
        weeks: Counter[str] = Counter()
        weeks_hit: Counter[str] = Counter()
        for s in group:
            y, w, _ = s.requested.astimezone(zone).date().isocalendar()
            weeks[f"{y}-W{w:02d}"] += 1
            weeks_hit[f"{y}-W{w:02d}"] += s.session_id in hit
        out.append(
            {
                "provider": p,
                "tutor_id": tutor,
                "sessions": len(group),
                "overlapping_sessions": len(hit),
                "share": len(hit) / len(group),
                "highest_concurrency": concurrency,
                "weeks": [
                    {"week": k, "sessions": weeks[k], "overlapping_sessions": weeks_hit[k]}
                    for k in sorted(weeks)
                ],
            }
        )
    return out


def overlapping_ids(events: list[dict[str, Any]], district_id: str) -> dict[str, set[str]]:
    """Session → the sessions of the same provider and tutor it overlaps (only those with any)."""
    found: dict[str, set[str]] = {}
    sessions = completed_sessions(events, district_id)
    for a in sessions:
        for b in sessions:
            same = (a.provider, a.tutor_id) == (b.provider, b.tutor_id)
            if a is not b and same and overlaps(a, b):
                found.setdefault(a.session_id, set()).add(b.session_id)
    return found
