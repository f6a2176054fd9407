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

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tutorledger.infra.clickhouse import ProjectionStore

# The district's first event after the asked position (the successor of the asked one).
NEXT_SQL = """
SELECT count(), min(position) FROM ledger_events
WHERE district_id = %(district_id)s AND position > %(asked)s AND position <= %(upto)s
"""
# A page of the district's events at or below a position, newest first, with local days.
DAYS_SQL = """
SELECT position, toDate(any(occurred_at), %(tz)s) FROM ledger_events
WHERE district_id = %(district_id)s AND position <= %(below)s
GROUP BY position ORDER BY position DESC LIMIT %(page)s
"""
PAGE = 20_000
REQUESTS_SQL = """
SELECT count(), min(requested_at), max(requested_at) FROM {facts}
WHERE district_id = %(district_id)s AND step = 0 AND position <= %(as_of)s
"""


def today_in(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


def published_position(
    store: ProjectionStore, district_id: str, tz: str, asked: int, upto: int
) -> int:
    """The highest published position ≤ `asked` (0 if none), as far as the events at
    positions ≤ `upto` (what is projected) tell."""
    params: dict[str, Any] = {"district_id": district_id, "asked": asked, "upto": upto}
    ((found, successor),) = store.execute(NEXT_SQL, params)
    below = int(successor) if int(found) else asked
    params |= {"tz": tz, "page": PAGE}
    later: tuple[int, Any] | None = None  # the event after the one looked at
    while True:
        rows = store.execute(DAYS_SQL, params | {"below": below})
        for position, day in rows:
            if later is not None and int(position) <= asked and str(day) != str(later[1]):
                return int(position)
            later = (int(position), day)
        if len(rows) < PAGE:
            return 0
        below = int(rows[-1][0]) - 1


def request_weeks(
    store: ProjectionStore, facts: str, district_id: str, tz: str, as_of: int
) -> tuple[date, date]:
    """Monday of the week of the district's first request and Sunday of its last one, as of
    the position (today's week when there is none): what an open range covers."""
    params = {"district_id": district_id, "as_of": as_of}
    ((found, first, last),) = store.execute(REQUESTS_SQL.format(facts=facts), params)
    if not int(found):
        first = last = datetime.now(ZoneInfo("UTC"))
    low, high = (_utc(t).astimezone(ZoneInfo(tz)).date() for t in (first, last))
    return low - timedelta(days=low.weekday()), high + timedelta(days=6 - high.weekday())


def _utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=ZoneInfo("UTC")) if moment.tzinfo is None else moment
