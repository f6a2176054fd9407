"""Wait times: how long students wait for a tutor, request → match, to the microsecond."""

from __future__ import annotations

from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters
from tutorledger.projections.groups import grouped_sql, key_fields

PERCENTILES = (50, 90, 99)

WAIT_US = (
    "(toInt64(matched_at) - toInt64(requested_at)) * 1000000"
    " + toInt64(matched_us) - toInt64(requested_us)"
)

# Nearest rank: the ceil(P·n/100)-th smallest wait, in integer arithmetic so that ClickHouse
# 18.16, chdb and Python agree exactly (no float rounding in the rank).
RANKS = ", ".join(
    f"arrayElement(waits, greatest(1, intDiv({p} * n_matched + 99, 100)))" for p in PERCENTILES
)
WAIT_SELECT = f"""
    count() AS requests,
    countIf(matched > 0) AS n_matched,
    arraySort(groupArrayIf({WAIT_US}, matched > 0)) AS waits
"""


def wait_sql(keys: tuple[str, ...]) -> str:
    """Percentiles picked inside ClickHouse: the sorted waits never leave the server."""
    head = "".join(f"{k}, " for k in keys)
    order = f" ORDER BY {', '.join(keys)}" if keys else ""
    return (
        f"SELECT {head}requests, n_matched, {RANKS}, arrayElement(waits, greatest(1, n_matched))"
        f" FROM ({grouped_sql(WAIT_SELECT, keys)}){order}"
    )


def wait_times(
    store: ProjectionStore, filters: Filters, keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """p50/p90/p99/max wait seconds of matched requests, and how many were never matched."""
    out = []
    for row in store.execute(wait_sql(keys), filters.params()):
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
