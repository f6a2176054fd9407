"""Satisfaction: what students said in post-session surveys, however late they arrived."""

from __future__ import annotations

from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters
from tutorledger.projections.groups import grouped_sql, key_fields

SATISFACTION_SELECT = """
    countIf(completed > 0) AS completed_sessions,
    countIf(surveyed > 0) AS surveys,
    countIf(surveyed > 0 AND helped = 1) AS helped_surveys,
    sumIf(toInt64(rating), surveyed > 0) AS rating_sum
"""


def satisfaction(
    store: ProjectionStore, filters: Filters, keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Surveys of the sessions requested in range; ratios are computed here from exact counts."""
    out = []
    for row in store.execute(grouped_sql(SATISFACTION_SELECT, keys), filters.params()):
        fields = key_fields(keys, row)
        completed, surveys, helped, rating_sum = (int(v) for v in row[len(keys) :])
        out.append(
            {
                **fields,
                "completed": completed,
                "surveys": surveys,
                "helped": helped,
                "helped_rate": helped / surveys if surveys else None,
                "mean_rating": rating_sum / surveys if surveys else None,
                "survey_rate": surveys / completed if completed else None,
            }
        )
    return out
