"""Satisfaction: what students said in post-session surveys, however late they arrived."""

from __future__ import annotations

from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.groups import grouped_sql, key_fields
from tutorledger.projections.steps import COMPLETED, REQUESTED, SURVEYED

SATISFACTION_SELECT = f"""
    countIf(step = {COMPLETED}) AS completed_sessions,
    countIf(step = {SURVEYED}) AS surveys,
    countIf(step = {SURVEYED} AND helped = 1) AS helped_surveys,
    sumIf(toInt64(rating), step = {SURVEYED}) AS rating_sum
"""
# Requests are read too: a group appears when it has a request, even with no survey yet.
STEPS = (REQUESTED, COMPLETED, SURVEYED)


def satisfaction(
    store: ProjectionStore, filters: Filters, keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Surveys of the sessions requested in range; ratios are computed here from exact counts."""
    out = []
    sql = grouped_sql(
        SATISFACTION_SELECT, keys, filters.tables(store).facts, facts_where(filters, STEPS)
    )
    for row in store.execute(sql, filters.params()):
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
