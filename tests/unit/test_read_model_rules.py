"""The arithmetic the read-model queries rely on, checked without a server."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import given
from hypothesis import strategies as st

from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.read_models import Request, student_key
from tutorledger.projections.wait_times import LEVELS, PERCENTILES
from tutorledger.projections.writer import RequestCache

ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc"))


@given(n=st.integers(min_value=1, max_value=999_999_999))
def test_quantile_levels_pick_the_nearest_rank(n: int) -> None:
    """quantileExact(l) takes 0-based index ⌊l·n⌋ (a double product, as here): with our
    levels that is the nearest rank ⌈P·n/100⌉ − 1 for every n below 10⁹."""
    for percent, level in zip(PERCENTILES, LEVELS.split(", "), strict=True):
        rank = math.ceil(Fraction(percent * n, 100))
        assert int(float(level) * n) == rank - 1


@given(
    day=st.dates(min_value=date(1971, 1, 1), max_value=date(2100, 12, 31)),
    zone=st.sampled_from(ZONES),
    minute=st.integers(min_value=0, max_value=24 * 60 - 1),
)
def test_utc_bounds_hold_every_instant_of_the_local_day(day: date, zone: str, minute: int) -> None:
    """The prunable UTC bounds never cut off a request of the local days asked for."""
    local = datetime.combine(day, time(), tzinfo=ZoneInfo(zone)) + timedelta(minutes=minute)
    instant = local.astimezone(UTC).replace(tzinfo=None)
    params = Filters("d", 1, zone, date_from=day, date_to=day).params()
    low = datetime.fromisoformat(params["utc_from"])
    high = datetime.fromisoformat(params["utc_to"])
    assert low <= instant < high


def test_only_given_filters_reach_the_sql() -> None:
    bare = facts_where(Filters("d", 7, "UTC"), (0,))
    assert bare == "district_id = %(district_id)s AND step IN (0) AND position <= %(as_of)s"
    full = facts_where(
        Filters("d", 7, "UTC", "s", "algebra", 3, date(2026, 1, 1), date(2026, 1, 2)), (0, 1)
    )
    for column in ("school_id", "subject", "grade", "toDate(requested_at"):
        assert column in full


def test_request_cache_keeps_the_newest_sessions() -> None:
    cache = RequestCache(size=2)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(3):
        cache.put(("d", f"s{i}"), Request("sch", "math", 3, i, at, 0))
    assert cache.get(("d", "s0")) is None
    assert [cache.get(("d", f"s{i}")) is not None for i in (1, 2)] == [True, True]


def test_a_full_cache_drops_its_oldest_tenth_and_keeps_the_newest() -> None:
    cache = RequestCache(size=1000)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(5000):
        cache.put(("d", f"s{i}"), Request("sch", "math", 3, i, at, 0))
        assert len(cache) <= 1000
        older = ("d", f"s{i - 300}")
        if i % 7 == 0 and cache.get(older) is not None:  # a later step of a cached session
            cache.put(older, Request("sch", "math", 3, i - 300, at, 0, 5))
    assert all(cache.get(("d", f"s{i}")) is not None for i in range(4100, 5000))
    assert len(cache) >= 900 and cache.get(("d", "s0")) is None


def test_wait_is_exact_to_the_microsecond_and_student_keys_are_stable() -> None:
    request = Request("sch", "math", 3, 1, datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC), 999_999)
    assert request.wait_us(datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC), 0) == 1
    assert student_key("stu-1") == student_key("stu-1") != student_key("stu-2")
