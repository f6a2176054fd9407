"""`group_by` for the metrics whose answer is one set of headline figures (participation,
timing, engagement, dosage): the answer stays as it is, and gains `group_by`, `groups` (the
headline figures per group value, projections/grouped_figures.py) and, by roster group,
`margins` (the same figures without the group split).

Suppression treats `groups` as the grouped metrics treat their rows (api/metrics/suppression.py):
each count column is a line over the groups (their sum is the headline figure, or with two
dimensions each school's, subject's, provider's or roster group's figure, published by
another grouping), a group's count is withheld when its margin minus it is small, and every
rate, mean or percentile of a group goes with the counts it is computed from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from tutorledger.api.metrics import suppression as plans
from tutorledger.api.metrics.csv import Table, table
from tutorledger.api.metrics.suppression import Plan, Planner
from tutorledger.projections.groups import GROUPS, STUDENT_GROUP

Keys = tuple[str, ...]
RowsOf = Callable[[Keys], list[dict[str, Any]]]


def group_fields(keys: Keys, rows_of: RowsOf) -> dict[str, Any]:
    """`group_by`, `groups` and (by roster group) `margins` for an answer grouped by `keys`;
    nothing when `keys` is empty (the answer is then exactly the ungrouped one)."""
    if not keys:
        return {}
    body = {"group_by": [n for n, c in GROUPS.items() if c in keys], "groups": rows_of(keys)}
    if STUDENT_GROUP in keys:
        body["margins"] = rows_of(tuple(k for k in keys if k != STUDENT_GROUP))
    return body


def grouped_planner(
    headline: Planner,
    counts: tuple[str, ...],
    derived: dict[str, tuple[str, ...]],
    closed: tuple[str, ...] = (),
) -> Planner:
    """The metric's own planner, then its `groups` (and `margins`): `counts` as lines,
    `derived` figures withheld with their sources, `closed` an identity inside each row."""

    def plan_groups(plan: Plan, body: dict[str, Any]) -> None:
        headline(plan, body)
        groups = body.get("groups")
        if groups is None:
            return
        margins = body.get("margins") or []
        # The grouped metrics' lines and margin complements, over the groups as rows.
        plans._grouped(plan, {"rows": groups, "group_by": body["group_by"], "margins": margins},
                       counts)  # fmt: skip
        for row in groups + margins:
            for target, sources in derived.items():
                plan.derived.append(((id(row), target), [(id(row), s) for s in sources]))
            if closed:
                plan.closed.append([plan.cell(row, n) for n in closed])

    return plan_groups


def grouped_csv(row: type[BaseModel]) -> Callable[[BaseModel], Table]:
    """CSV of a groupable metric: its `groups` rows when grouped, else its usual table."""

    def rows_of(model: BaseModel) -> Table:
        body = model.model_dump(mode="json")
        if body.get("groups") is None:
            return table(model)
        trailer = {"as_of_position": body["as_of_position"], "head_hash": body["head_hash"]}
        return [*row.model_fields, *trailer], [{**g, **trailer} for g in body["groups"]]

    return rows_of


PARTICIPATION_COUNTS = (
    "students_served", "sessions_requested", "sessions_matched", "sessions_completed",
    "sessions_cancelled",
)  # fmt: skip
plan_participation = grouped_planner(
    plans.plan_participation,
    PARTICIPATION_COUNTS,
    {"sessions_per_served_student": ("sessions_requested", "students_served")},
)
plan_timing = grouped_planner(
    plans.plan_timing,
    ("requests", "in_school_requests", "after_school_requests"),
    {"after_school_share": ("after_school_requests", "requests")},
    closed=("requests", "in_school_requests", "after_school_requests"),
)
plan_engagement = grouped_planner(
    plans.plan_engagement,
    ("students", "regular_students", "one_time_students", "requests"),
    {},
)
LENGTHS = ("minutes", "length_mean", "length_p50", "length_p90", "length_p99", "length_max")
plan_dosage = grouped_planner(
    plans.plan_dosage,
    ("sessions_completed", "students_served"),
    {
        **dict.fromkeys(LENGTHS, ("sessions_completed",)),
        "minutes_per_student": ("sessions_completed", "students_served"),
    },
)


def grouping_text(figures: str) -> str:
    """The `group_by` paragraph of a groupable metric's description."""
    return f"""

**group_by**: `school`, `subject`, `group` (roster groups) or a comma list of them, or
`provider` alone or with one of those (e.g. `school,provider`); anything else → 422. Without
it the answer is exactly as above. With it the answer also holds `group_by` (the names) and
`groups`: one row per group value, sorted by its values, with {figures}; each row equals
these figures with its values as filters (a school, a subject, a provider, a roster group's
members), and only groups with such a row appear. By `group`, a student in several roster
groups counts in each and `margins` holds the same rows without the group split. CSV: the
`groups` rows. Dashboard keys see small counts withheld per group with complementary cells
as for `demand`: the groups' lines (all of them; each school's, subject's, provider's and
roster group's) keep zero or at least two withheld cells, and no withheld cell is fixed by
their totals together."""
