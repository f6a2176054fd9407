"""Tutor-overlap audit: sessions a tutor was running at the same time as another.

A session's *interval* runs from its `session.matched` instant to its `session.completed`
instant, to the microsecond, half-open: [matched, completed). Two sessions of the same tutor
(the matched event's `tutor_id`) under the same provider *overlap* when each starts before
the other ends; back-to-back sessions, one completed at the very instant the next was
matched, do not. Only completed sessions with a recorded match take part, the same ones
dosage measures; a session belongs to the ISO week of its request's local date, and the
filters (date range, school, subject, grade, provider, cohort, position) choose sessions as
for every metric.

The completed facts are read in one scan (migration 0007 gives them their provider and
tutor); the sweep over each tutor's intervals runs here, in time order, so it costs
O(n log n) plus the overlapping pairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.engagement import iso_week
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.steps import COMPLETED

US = 1_000_000
# Facts projected before migration 0007 have no tutor (''), and completions whose match an
# older release projected no `matched_us` (-1): neither has an interval until a rebuild.
INTERVALS_SQL = """
SELECT provider, tutor_id, session_id,
    toUInt64(requested_at) * 1000000 + requested_us + matched_us AS start_us,
    toUInt64(requested_at) * 1000000 + requested_us + wait_us AS end_us,
    toMonday(toDate(requested_at, %(tz)s)) AS week
FROM {facts} WHERE {where} AND tutor_id != '' AND matched_us >= 0
"""


@dataclass(frozen=True)
class Interval:
    """One completed session of a tutor: [start_us, end_us) in µs since the epoch (UTC)."""

    provider: str
    tutor_id: str
    session_id: str
    start_us: int
    end_us: int
    week: date  # Monday of the ISO week of the request's local date


@dataclass
class TutorOverlap:
    """The audit of one (provider, tutor)."""

    provider: str
    tutor_id: str
    sessions: int = 0
    overlapping: int = 0
    highest_concurrency: int = 0
    weeks: dict[date, list[int]] = field(default_factory=dict)  # Monday → [sessions, overlapping]
    overlaps: dict[str, set[str]] = field(default_factory=dict)  # session → sessions it overlaps

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "tutor_id": self.tutor_id,
            "sessions": self.sessions,
            "overlapping_sessions": self.overlapping,
            "share": self.overlapping / self.sessions if self.sessions else None,
            "highest_concurrency": self.highest_concurrency,
            "weeks": [
                {"week": iso_week(monday), "sessions": n, "overlapping_sessions": o}
                for monday, (n, o) in sorted(self.weeks.items())
            ],
        }


def intervals(store: ProjectionStore, filters: Filters) -> list[Interval]:
    """The completed sessions with a tutor and a match under the filters."""
    sql = INTERVALS_SQL.format(
        facts=filters.tables(store).facts, where=facts_where(filters, (COMPLETED,))
    )
    return [
        Interval(str(p), str(t), str(s), int(a), int(b), _day(w))
        for p, t, s, a, b, w in store.execute(sql, filters.params())
    ]


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _overlapping_pairs(sessions: list[Interval]) -> Iterable[tuple[Interval, Interval]]:
    """Every overlapping pair of one tutor's sessions, once: in start order, each session
    against those still running when it starts (ended ones leave the running list)."""
    running: list[Interval] = []
    for current in sorted(sessions, key=lambda i: (i.start_us, i.end_us, i.session_id)):
        running = [r for r in running if r.end_us > current.start_us]
        for other in running:
            if other.start_us < current.end_us:
                yield other, current
        running.append(current)


def highest_concurrency(sessions: Iterable[Interval]) -> int:
    """The most sessions in progress at one instant ([start, end): an end at the instant
    another starts is counted first, so back-to-back sessions make 1, not 2)."""
    edges = sorted(
        edge
        for i in sessions
        if i.end_us > i.start_us
        for edge in ((i.start_us, 1), (i.end_us, -1))
    )  # at one instant, -1 sorts before +1
    highest = current = 0
    for _, delta in edges:
        current += delta
        highest = max(highest, current)
    return highest


def audit(found: Iterable[Interval]) -> list[TutorOverlap]:
    """Per (provider, tutor), sorted: sessions, overlapping ones, concurrency, weekly series."""
    by_tutor: dict[tuple[str, str], list[Interval]] = defaultdict(list)
    for interval in found:
        by_tutor[(interval.provider, interval.tutor_id)].append(interval)
    out = []
    for (provider, tutor), sessions in sorted(by_tutor.items()):
        result = TutorOverlap(provider, tutor, sessions=len(sessions))
        for a, b in _overlapping_pairs(sessions):
            result.overlaps.setdefault(a.session_id, set()).add(b.session_id)
            result.overlaps.setdefault(b.session_id, set()).add(a.session_id)
        result.overlapping = len(result.overlaps)
        result.highest_concurrency = highest_concurrency(sessions)
        for s in sessions:
            week = result.weeks.setdefault(s.week, [0, 0])
            week[0] += 1
            week[1] += s.session_id in result.overlaps
        out.append(result)
    return out


def tutor_overlap(store: ProjectionStore, filters: Filters) -> list[TutorOverlap]:
    return audit(intervals(store, filters))


def instant(us: int) -> str:
    """µs since the epoch as an RFC 3339 UTC instant."""
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return at.isoformat().replace("+00:00", "Z")


def evidence(found: list[Interval], audited: list[TutorOverlap]) -> list[dict[str, Any]]:
    """Each overlapping session with its interval and the sessions it overlaps, in order."""
    overlaps = {(t.provider, t.tutor_id): t.overlaps for t in audited}
    rows = []
    for i in sorted(found, key=lambda i: (i.provider, i.tutor_id, i.start_us, i.session_id)):
        others = overlaps.get((i.provider, i.tutor_id), {}).get(i.session_id)
        if others:
            rows.append(
                {
                    "provider": i.provider,
                    "tutor_id": i.tutor_id,
                    "session_id": i.session_id,
                    "matched_at": instant(i.start_us),
                    "completed_at": instant(i.end_us),
                    "week": iso_week(i.week),
                    "overlaps_with": sorted(others),
                }
            )
    return rows
