"""Wait times: how long students wait for a tutor, request → match, to the microsecond."""

from __future__ import annotations

from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.groups import grouped_sql, key_fields
from tutorledger.projections.steps import MATCHED, REQUESTED

PERCENTILES = (50, 90, 99)
# Nearest rank pP is the ⌈P·n/100⌉-th smallest wait. quantileExact(l) selects (nth_element,
# no full sort) the element at 0-based index ⌊l·n⌋; with l = P/100 − 10⁻¹¹ that index is
# exactly ⌈P·n/100⌉ − 1 for every n < 10⁹: P·n/100 is either a whole number (then ⌊⌋ drops
# by one, as wanted) or at least 0.01 above one (which 10⁻¹¹·n never reaches).
LEVELS = ", ".join(f"{p / 100 - 1e-11:.11f}" for p in PERCENTILES)
WAIT_SELECT = f"""
    countIf(step = {REQUESTED}) AS requests,
    countIf(step = {MATCHED}) AS n_matched,
    quantilesExactIf({LEVELS})(wait_us, step = {MATCHED}) AS ranks,
    maxIf(wait_us, step = {MATCHED}) AS longest
"""


def wait_sql(keys: tuple[str, ...], facts: str, filters: Filters) -> str:
    """Percentiles picked inside ClickHouse: the waits never leave the server."""
    head = "".join(f"{k}, " for k in keys)
    order = f" ORDER BY {', '.join(keys)}" if keys else ""
    picks = ", ".join(f"ranks[{i + 1}]" for i in range(len(PERCENTILES)))
    inner = grouped_sql(WAIT_SELECT, keys, facts, facts_where(filters, (REQUESTED, MATCHED)))
    return f"SELECT {head}requests, n_matched, {picks}, longest FROM ({inner}){order}"


def wait_times(
    store: ProjectionStore, filters: Filters, keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """p50/p90/p99/max wait seconds of matched requests, and how many were never matched."""
    out = []
    sql = wait_sql(keys, filters.tables(store).facts, filters)
    for row in store.execute(sql, filters.params()):
        fields = key_fields(keys, row)
        requests, matched, *stats = row[len(keys) :]
        seconds = [int(v) / 1_000_000 if int(matched) else None for v in stats]
        out.append(
            {
                **fields,
                "requests": int(requests),
                "matched": int(matched),
                "unmatched": int(requests) - int(matched),
                **dict(zip(("p50", "p90", "p99", "max"), seconds, strict=True)),
            }
        )
    return out
