"""`group_by` for grouped metrics: a whitelist of columns, so no caller text reaches SQL."""

from __future__ import annotations

from itertools import permutations
from typing import Any

from tutorledger.domain.errors import InvalidRequest
from tutorledger.projections.group_members import PREFIX
from tutorledger.projections.read_models import COHORTS, FACTS

STUDENT_GROUP = "student_group"
GROUPS = {
    "school": "school_id",
    "subject": "subject",
    "group": STUDENT_GROUP,
    "provider": "provider",
}
GROUP_BY_HELP = (
    "'school', 'subject', 'group' (roster groups) or a comma list of them, or 'provider' alone "
    "or with one of them"
)
# Each fact once per roster group its student is in as of the position (not `roster.all`):
# a student in several groups counts in each, as cohort membership does.
BY_GROUP_SQL = f"""
(SELECT * FROM {{table}} WHERE {{where}}) AS f ALL INNER JOIN (
    SELECT substring(cohort_id, {len(PREFIX) + 1}) AS {STUDENT_GROUP}, arrayJoin(m) AS student_key
    FROM (
        SELECT cohort_id, argMax(members, position) AS m FROM {{cohorts}}
        WHERE district_id = %(district_id)s AND position <= %(as_of)s
            AND cohort_id LIKE '{PREFIX}%%' AND cohort_id != '{PREFIX}all'
        GROUP BY cohort_id
    )
) AS g USING student_key
"""


def parse_group_by(text: str | None, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """'school,subject' → ('school_id', 'subject') in a fixed order; anything else is a 422."""
    if text is None:
        return default
    names = [part.strip() for part in text.split(",")]
    if not _allowed(names):
        raise InvalidRequest(f"group_by must be {GROUP_BY_HELP}", {"group_by": text})
    return tuple(column for name, column in GROUPS.items() if name in names)


def _allowed(names: list[str] | tuple[str, ...]) -> bool:
    """Known names, each once; provider with at most one other. Provider and one other
    dimension is a two-way table whose every row and column total another grouping publishes
    (suppression keeps each line closed); a third dimension would need the pairs' totals as
    lines too, which suppression does not draw."""
    known = bool(names) and all(n in GROUPS for n in names) and len(set(names)) == len(names)
    return known and ("provider" not in names or len(names) <= 2)


def group_by_choices() -> list[str]:
    """Every `group_by` text parse_group_by accepts, in every order (the API's pattern: a
    value the OpenAPI allows is one the route accepts)."""
    found = []
    for size in range(1, len(GROUPS) + 1):
        found += [",".join(p) for p in permutations(GROUPS, size) if _allowed(p)]
    return found


def grouped_sql(select: str, keys: tuple[str, ...], table: str, where: str) -> str:
    """`select` aggregated over `table` rows matching `where`, by `keys` (one row when there
    are none). `keys` come from GROUPS only; `table` and `where` from the code."""
    key_list = ", ".join(keys)
    head = f"{key_list}, " if keys else ""
    if STUDENT_GROUP in keys:  # the same facts, joined to their students' roster groups
        cohorts = table.replace(FACTS, COHORTS, 1)
        table, where = BY_GROUP_SQL.format(table=table, where=where, cohorts=cohorts), "1"
    tail = f" GROUP BY {key_list} ORDER BY {key_list}" if keys else ""
    return f"SELECT {head}{select} FROM {table} WHERE {where}{tail}"


def key_fields(keys: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    """The row's group columns by name; columns not grouped on are None."""
    values = dict(zip(keys, row, strict=False))
    return {column: values.get(column) for column in GROUPS.values()}
