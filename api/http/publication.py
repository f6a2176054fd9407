"""Published positions: the ledger positions that keys seeing suppressed figures may read.

A day is published at the district's local midnight that closes it: its position is that of
the last event (by position) that occurred before that midnight. Rounding an asked position
down to the highest published one means two positions inside one day give one answer, so a
single event cannot be isolated by asking at the positions around it (docs/privacy.md).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tutorledger.infra.clickhouse import ProjectionStore

# The earliest event that came after the asked position (its local day is not closed there).
FIRST_AFTER_SQL = """
SELECT count(), min(occurred_at) FROM ledger_events
WHERE district_id = %(district_id)s AND position > %(asked)s AND position <= %(upto)s
"""
# The last event before a local midnight: the position published at that midnight.
LAST_BEFORE_SQL = """
SELECT count(), max(position) FROM ledger_events
WHERE district_id = %(district_id)s AND position <= %(asked)s
    AND occurred_at < toDateTime(%(cut)s, 'UTC')
"""
REQUESTS_SQL = """
SELECT count(), min(requested_at), max(requested_at) FROM {facts}
WHERE district_id = %(district_id)s AND step = 0 AND position <= %(as_of)s
"""


def today_in(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


def published_position(
    store: ProjectionStore, district_id: str, tz: str, asked: int, upto: int
) -> int:
    """The highest published position ≤ `asked`: the last event before the local midnight
    that opens the first day with an event after `asked` (or today's, if none), as far as
    positions ≤ `upto` (what is projected) tell."""
    params = {"district_id": district_id, "asked": asked, "upto": upto}
    ((later, first_after),) = store.execute(FIRST_AFTER_SQL, params)
    day = today_in(tz)
    if int(later):
        day = min(day, _utc(first_after).astimezone(ZoneInfo(tz)).date())
    cut = datetime.combine(day, time(), ZoneInfo(tz)).astimezone(ZoneInfo("UTC"))
    params["cut"] = cut.strftime("%Y-%m-%d %H:%M:%S")
    ((found, last),) = store.execute(LAST_BEFORE_SQL, params)
    return int(last) if int(found) else 0


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
