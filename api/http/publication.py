"""Published positions: the ledger positions that keys seeing suppressed figures may read.

A position is published when the district's next event (by position) occurred on another
local day than the event at it: the ends of the runs of one day's events, in the order the
ledger recorded them. Whether a position is published depends only on it and the event
after it, both immutable, so a published position stays published (a dashboard's
"reproduce" link keeps working whatever is recorded later), and the newest events, those
not yet followed by another day's, are not published. Rounding an asked position down to
the highest published one means positions inside one run give one answer, so a single
event cannot be isolated by asking at the positions around it (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tutorledger.infra.clickhouse import ProjectionStore

# The district's first event after the asked position (the successor of the asked one).
NEXT_SQL = """
SELECT count(), min(position) FROM ledger_events
WHERE district_id = %(district_id)s AND position > %(asked)s AND position <= %(upto)s
"""
# A window of the district's events at or below a position, newest first, with local days:
# a range of positions, so the read touches that window alone (the sort key starts with
# the position's neighbours), not every event of the district.
DAYS_SQL = """
SELECT position, toDate(any(occurred_at), %(tz)s) FROM ledger_events
WHERE district_id = %(district_id)s AND position <= %(below)s AND position > %(floor)s
GROUP BY position ORDER BY position DESC
"""
WINDOW = 4096  # positions in the first window; each next one is twice as wide


def today_in(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


def published_position(
    store: ProjectionStore, district_id: str, tz: str, asked: int, upto: int
) -> int:
    """The highest published position ≤ `asked` (0 if none), as far as the events at
    positions ≤ `upto` (what is projected) tell."""
    return next(published_positions(store, district_id, tz, asked, upto), 0)


def published_positions(
    store: ProjectionStore, district_id: str, tz: str, asked: int, upto: int
) -> Iterator[int]:
    """The published positions ≤ `asked`, highest first, from one walk down the ledger: a
    dashboard answer needs its own and the previous one, and a second walk would read the
    same windows again."""
    params: dict[str, Any] = {"district_id": district_id, "asked": asked, "upto": upto}
    ((found, successor),) = store.execute(NEXT_SQL, params)
    below = int(successor) if int(found) else asked
    params |= {"tz": tz}
    later: tuple[int, Any] | None = None  # the event after the one looked at
    window = WINDOW
    while below > 0:
        floor = max(below - window, 0)
        for position, day in store.execute(DAYS_SQL, params | {"below": below, "floor": floor}):
            if later is not None and int(position) <= asked and str(day) != str(later[1]):
                yield int(position)
            later = (int(position), day)
        below, window = floor, window * 2


def _utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=ZoneInfo("UTC")) if moment.tzinfo is None else moment
