"""Published positions: one walk down the ledger gives the same positions as asking for each
in turn, whatever the windows (a fake store answers the two queries from a list)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tutorledger.api.http import publication
from tutorledger.api.http.publication import NEXT_SQL, published_position, published_positions


class DaysStore:
    """Answers NEXT_SQL and DAYS_SQL over one district's (position, local day) rows."""

    def __init__(self, rows: list[tuple[int, date]]) -> None:
        self.rows = sorted(rows)
        self.reads = 0

    def execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        self.reads += 1
        if sql == NEXT_SQL:
            after = [p for p, _ in self.rows if params["asked"] < p <= params["upto"]]
            return [(len(after), min(after, default=0))]
        inside = [r for r in self.rows if params["floor"] < r[0] <= params["below"]]
        return sorted(inside, reverse=True)


def expected(rows: list[tuple[int, date]], asked: int, upto: int) -> list[int]:
    """By definition: a position is published when the district's next event is on another day."""
    known = sorted(r for r in rows if r[0] <= upto)
    out = [p for (p, d), (_, d2) in zip(known, known[1:], strict=False) if d != d2 and p <= asked]
    return sorted(out, reverse=True)


ledgers = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2)), min_size=0, max_size=60)


def build(steps: list[tuple[int, int]]) -> list[tuple[int, date]]:
    """Increasing positions (gaps: other districts' events) with days that never go back."""
    rows, position, day = [], 0, date(2026, 9, 7)
    for gap, days in steps:
        position, day = position + gap, day + timedelta(days=days)
        rows.append((position, day))
    return rows


@given(ledgers, st.integers(0, 200), st.integers(0, 200), st.sampled_from([1, 3, 4096]))
def test_one_walk_gives_every_published_position(
    steps: list[tuple[int, int]], asked: int, upto: int, window: int
) -> None:
    rows, asked = build(steps), min(asked, upto)  # callers never ask past what is projected
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(publication, "WINDOW", window)
        store = DaysStore(rows)
        walk = list(published_positions(store, "d", "UTC", asked, upto))
        assert walk == expected(rows, asked, upto)
        first = published_position(store, "d", "UTC", asked, upto)
        assert first == (walk[0] if walk else 0)
        if walk:
            second = published_position(store, "d", "UTC", walk[0] - 1, upto)
            assert second == (walk[1] if len(walk) > 1 else 0)
