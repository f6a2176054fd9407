"""Suppression of `groups` (participation, timing, engagement, dosage with `group_by`), on
generated tables: no withheld count can be solved for from what a dashboard key can learn —
the cells shown, the headline total, and each school's and each provider's total (other
groupings publish them unless they are small) — by any combination of those sums, checked
with exact fractions; by roster group, no group's count shows when its margin minus it (the
rest of the district) is small; every figure computed from a withheld count is withheld.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tutorledger.api.metrics import schemas as ms
from tutorledger.api.metrics.derivable import fixed
from tutorledger.api.metrics.registry import DOSAGE, ENGAGEMENT, PARTICIPATION, TIMING, Metric
from tutorledger.api.metrics.suppression import suppress_metric

ENVELOPE = {"district_id": "d", "as_of_position": 1, "head_hash": None, "filters": {}}


def _participation(rows: list[dict[str, Any]], n: list[int]) -> None:
    for r, v in zip(rows, n, strict=True):
        r.update(students_served=v // 2, sessions_requested=v, sessions_matched=v * 3 // 4,
                 sessions_completed=v // 2, sessions_cancelled=v // 5,
                 sessions_per_served_student=2.0 if v // 2 else None)  # fmt: skip


def _timing(rows: list[dict[str, Any]], n: list[int]) -> None:
    for r, v in zip(rows, n, strict=True):
        r.update(requests=v, in_school_requests=v * 2 // 3, after_school_requests=v - v * 2 // 3,
                 after_school_share=(v - v * 2 // 3) / v if v else None)  # fmt: skip


def _engagement(rows: list[dict[str, Any]], n: list[int]) -> None:
    for r, v in zip(rows, n, strict=True):
        r.update(students=v, regular_students=v // 3, one_time_students=v // 4, requests=v * 3)


def _dosage(rows: list[dict[str, Any]], n: list[int]) -> None:
    for r, v in zip(rows, n, strict=True):
        r.update(sessions_completed=v, students_served=(v + 1) // 2, minutes=30.0 * v,
                 minutes_per_student=60.0 if v else None, length_mean=30.0 if v else None,
                 length_p50=30.0 if v else None, length_p90=31.0 if v else None,
                 length_p99=32.0 if v else None, length_max=33.0 if v else None)  # fmt: skip


CASES: dict[str, tuple[Metric[Any], Any, tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "participation": (PARTICIPATION, _participation, (
        "students_served", "sessions_requested", "sessions_matched", "sessions_completed",
        "sessions_cancelled"), {"sessions_per_served_student": (
            "sessions_requested", "students_served")}),
    "timing": (TIMING, _timing, ("requests", "in_school_requests", "after_school_requests"),
               {"after_school_share": ("after_school_requests", "requests")}),
    "engagement": (ENGAGEMENT, _engagement,
                   ("students", "regular_students", "one_time_students", "requests"), {}),
    "dosage": (DOSAGE, _dosage, ("sessions_completed", "students_served"), {
        **dict.fromkeys(("minutes", "length_mean", "length_p50", "length_p90", "length_p99",
                         "length_max"), ("sessions_completed",)),
        "minutes_per_student": ("sessions_completed", "students_served")}),
}  # fmt: skip


def _headline(metric: str, groups: list[dict[str, Any]], counts: tuple[str, ...]) -> Any:
    """An answer whose headline figures are the sums of `groups` (school × provider)."""
    total = {n: sum(g[n] for g in groups) for n in counts}
    if metric == "participation":
        return ms.Participation(**ENVELOPE, enrolled=1000, reach_rate=None, **total,
                                sessions_per_served_student=None)  # fmt: skip
    if metric == "timing":
        cells = [{"weekday": d, "hour": h, "requests": 0, "in_school_requests": 0}
                 for d in range(1, 8) for h in range(24)]  # fmt: skip
        cells[0].update(requests=total["requests"], in_school_requests=total["in_school_requests"])
        return ms.Timing(**ENVELOPE, time_zone="UTC",
                         school_hours={"days": [1], "start": "08:00", "end": "15:30"},
                         requests=total["requests"],
                         after_school_requests=total["after_school_requests"],
                         after_school_share=None,
                         by_hour=[{"hour": h, "requests": total["requests"] * (h == 0)}
                                  for h in range(24)],
                         by_weekday=[{"weekday": d, "requests": total["requests"] * (d == 1)}
                                     for d in range(1, 8)],
                         rows=cells)  # fmt: skip
    if metric == "engagement":
        return ms.Engagement(**ENVELOPE, regular_weeks=3, rows=[],
                             **{n: v for n, v in total.items() if n != "requests"})  # fmt: skip
    return ms.Dosage(**ENVELOPE, **total, minutes=0.0, minutes_per_student=None,
                     length_mean=None, length_p50=None, length_p90=None, length_p99=None,
                     length_max=None, target_minutes=60, rows=[])  # fmt: skip


def _at(**values: str) -> dict[str, Any]:
    """A group row's keys: the given ones, the others null."""
    return {**dict.fromkeys(("school_id", "subject", "student_group", "provider")), **values}


def _grouped(headline: Any, fields: dict[str, Any]) -> Any:
    return type(headline).model_validate({**headline.model_dump(), **fields})


def _rank(rows: list[list[Fraction]]) -> int:
    """Rank over the rationals, by plain Gaussian elimination (independent of the code's)."""
    m = [list(r) for r in rows]
    rank = 0
    for col in range(len(m[0]) if m else 0):
        pivot = next((i for i in range(rank, len(m)) if m[i][col] != 0), None)
        if pivot is None:
            continue
        m[rank], m[pivot] = m[pivot], m[rank]
        for i in range(len(m)):
            if i != rank and m[i][col] != 0:
                f = m[i][col] / m[rank][col]
                m[i] = [a - f * b for a, b in zip(m[i], m[rank], strict=True)]
        rank += 1
    return rank


def _solvable(lines: list[list[int]], hidden: list[int]) -> list[int]:
    """Withheld cells (indexes) that the lines' known totals determine."""
    rows = [[Fraction(int(c in line)) for c in hidden] for line in lines]
    rows = [r for r in rows if any(r)]
    base = _rank(rows)
    out = []
    for i in range(len(hidden)):
        unit = [Fraction(int(j == i)) for j in range(len(hidden))]
        if _rank([*rows, unit]) == base:
            out.append(hidden[i])
    return out


TABLE = st.lists(st.lists(st.integers(0, 40), min_size=2, max_size=4), min_size=2, max_size=5)


@settings(max_examples=60, deadline=None)
@given(TABLE, st.integers(2, 15), st.sampled_from(sorted(CASES)))
def test_no_withheld_school_provider_cell_is_solvable(
    table: list[list[int]], k: int, metric: str
) -> None:
    width = min(len(r) for r in table)
    model, fill, counts, derived = CASES[metric]
    groups = [_at(school_id=f"s{i}", provider=f"p{j}")
              for i in range(len(table)) for j in range(width)]  # fmt: skip
    fill(groups, [v for r in table for v in r[:width]])
    body = _grouped(
        _headline(metric, groups, counts), {"group_by": ["school", "provider"], "groups": groups}
    )
    shown = suppress_metric(model, body, "dashboard", k).model_dump()["groups"]
    for name in counts:
        values = [g[name] for g in groups]
        lines: dict[Any, list[int]] = defaultdict(list)
        for i, g in enumerate(groups):
            lines[("school", g["school_id"])].append(i)
            lines[("provider", g["provider"])].append(i)
            lines["all"].append(i)
        # A dashboard key learns each line's total unless it is small (then it is withheld
        # where it is published), and every cell shown: one equation each.
        known = [ix for ix in lines.values() if sum(values[i] for i in ix) >= k]
        hidden = [i for i, s in enumerate(shown) if s[name] is None]
        for value, s in zip(values, shown, strict=True):
            assert s[name] is None or (s[name] == value and not 0 < value < k)
        solvable = _solvable(known, hidden)
        assert not solvable, (name, [groups[i] for i in solvable])
    for s in shown:
        for target, sources in derived.items():
            if s[target] is not None:
                assert all(s[x] is not None for x in sources), (target, s)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 60), min_size=2, max_size=3), min_size=1, max_size=4),
       st.integers(2, 15), st.sampled_from(sorted(CASES)))  # fmt: skip
def test_a_roster_group_cell_never_shows_a_small_rest(
    table: list[list[int]], k: int, metric: str
) -> None:
    """Rows by (roster group, provider) beside `margins` by provider: groups overlap, so the
    margin is at least each group's count; margin − count is the rest, never small when shown."""
    width = min(len(r) for r in table)
    model, fill, counts, _ = CASES[metric]
    groups = [_at(student_group=f"g{i}", provider=f"p{j}")
              for i in range(len(table)) for j in range(width)]  # fmt: skip
    fill(groups, [v for r in table for v in r[:width]])
    margins = [_at(provider=f"p{j}") for j in range(width)]
    fill(margins, [max(r[j] for r in table) + 7 * j for j in range(width)])
    body = _grouped(
        _headline(metric, margins, counts),
        {"group_by": ["group", "provider"], "groups": groups, "margins": margins},
    )
    out = suppress_metric(model, body, "dashboard", k).model_dump()
    by_provider = {m["provider"]: m for m in body.model_dump()["margins"]}
    for s, g in zip(out["groups"], body.model_dump()["groups"], strict=True):
        margin = by_provider[g["provider"]]
        for name in counts:
            if 0 < margin[name] - g[name] < k or 0 < g[name] < k:
                assert s[name] is None, (name, g, margin)


def test_two_rectangles_joined_by_one_cell_are_not_solvable() -> None:
    """Every small cell is withheld and every line holds zero or at least two of them, yet the
    cell joining the two rectangles, (s0, p3), is fixed by the row and column totals
    together: the last step of suppression withholds one more cell."""
    a, b = 3, 50  # small cells inside large lines
    table = [[a, a, b, 4, b], [a, a, b, b, b], [b, b, a, a, b], [b, b, a, a, b]]
    hidden = {(i, j) for i, r in enumerate(table) for j, v in enumerate(r) if v < 10}
    lines = [[(i, j) for j in range(5)] for i in range(4)] + [
        [(i, j) for i in range(4)] for j in range(5)
    ]
    assert (0, 3) in fixed(lines, hidden)
    groups = [_at(school_id=f"s{i}", provider=f"p{j}") for i in range(4) for j in range(5)]
    _engagement(groups, [v for r in table for v in r])
    body = _grouped(
        _headline("engagement", groups, CASES["engagement"][2]),
        {"group_by": ["school", "provider"], "groups": groups},
    )
    shown = suppress_metric(ENGAGEMENT, body, "dashboard", 10).model_dump()["groups"]
    cells = [(i // 5, i % 5) for i, s in enumerate(shown) if s["students"] is None]
    assert not fixed(lines, set(cells))
