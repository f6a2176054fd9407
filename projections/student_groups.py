"""Student groups over the read models: the `group` filter and the equity-gap figures.

A roster group is a cohort under a reserved id (`roster.<code>`, domain/student_groups.py),
so its membership as of a position is the last import at or before it, read from the
cohort read model like any cohort's. Equity compares each group with the rest of the
rostered district (`roster.all` minus the group), over the students of the roster.
"""

from __future__ import annotations

from math import sqrt
from typing import Any

from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.group_members import PREFIX
from tutorledger.projections.steps import REQUESTED

Z95 = 1.959963984540054
REGULAR_WEEKS = 3  # as engagement: active in at least three distinct ISO weeks of the range

# Each roster group's members as of the position (one row per group and member).
MEMBERSHIP_SQL = f"""
SELECT cohort_id, arrayJoin(m) AS student_key FROM (
    SELECT cohort_id, argMax(members, position) AS m FROM {{cohorts}}
    WHERE district_id = %(district_id)s AND position <= %(as_of)s AND cohort_id LIKE '{PREFIX}%%'
    GROUP BY cohort_id
)
"""
# Per-student measures over the filters' requests, one aggregate each: add `name: aggregate`
# here, the aggregate being a 0/1 per student over these facts; the query, the response and
# the alert pick it up. The dosage standard is not a request aggregate (it reads completed
# sessions by week): it comes from its own query, joined to the same members.
MEASURES: dict[str, str] = {
    "reach": "toUInt8(count() > 0)",
    "regular_use": f"toUInt8(uniqUpTo({REGULAR_WEEKS})(toMonday(toDate(requested_at, %(tz)s)))"
    f" >= {REGULAR_WEEKS})",
}
EQUITY_SQL = """
SELECT cohort_id, count(), {sums} FROM (
    SELECT * FROM ({membership}) AS members
    ANY LEFT JOIN (
        SELECT student_key, {measures} FROM {facts} WHERE {where} GROUP BY student_key
    ) AS used USING student_key
)
GROUP BY cohort_id
"""


STANDARD = "dosage_standard"
# Each group's members that met the dosage standard (`met` a query of dosage_standard.py).
STANDARD_SQL = """
SELECT cohort_id, sum(met) FROM (
    SELECT * FROM ({membership}) AS members ANY LEFT JOIN ({met}) AS standard USING student_key
)
GROUP BY cohort_id
"""
Met = tuple[str, dict[str, Any]]  # the per-student `met` query and its parameters


def met_counts(store: ProjectionStore, filters: Filters, met: Met) -> dict[str, int]:
    """Per group code (and `all`): the members who met the dosage standard."""
    membership = MEMBERSHIP_SQL.format(cohorts=filters.tables(store).cohorts)
    sql, params = met
    rows = store.execute(STANDARD_SQL.format(membership=membership, met=sql), params)
    return {str(code)[len(PREFIX) :]: int(n) for code, n in rows}


def member_counts(store: ProjectionStore, filters: Filters) -> dict[str, tuple[int, ...]]:
    """Per group code (and `all`): members, then each measure's count among them."""
    names = list(MEASURES)
    tables = filters.tables(store)
    sql = EQUITY_SQL.format(
        sums=", ".join(f"sum(m_{n})" for n in names),
        membership=MEMBERSHIP_SQL.format(cohorts=tables.cohorts),
        measures=", ".join(f"{MEASURES[n]} AS m_{n}" for n in names),
        facts=tables.facts,
        where=facts_where(filters, (REQUESTED,)),
    )
    return {
        str(row[0])[len(PREFIX) :]: tuple(int(v) for v in row[1:])
        for row in store.execute(sql, filters.params())
    }


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for x successes out of n (n > 0)."""
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0 and n the bounds are exactly 0 and 1; rounding must not move them off.
    low = 0.0 if x == 0 else max(0.0, centre - half)
    return low, 1.0 if x == n else min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 − p2 with Newcombe's hybrid score interval (his method 10, from Wilson intervals)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    low = d - sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def gap_row(
    code: str, measure: str, group: tuple[int, int], rest: tuple[int, int]
) -> dict[str, Any]:
    """One group × measure: its count and rate, the rest's, the difference and its interval."""
    (x1, n1), (x2, n2) = group, rest
    row: dict[str, Any] = {
        "group": code,
        "measure": measure,
        "students": n1,
        "count": x1,
        "rate": x1 / n1 if n1 else None,
        "rest_students": n2,
        "rest_count": x2,
        "rest_rate": x2 / n2 if n2 else None,
        "difference": None,
        "ci_low": None,
        "ci_high": None,
    }
    if n1 and n2:
        row["difference"], row["ci_low"], row["ci_high"] = newcombe(x1, n1, x2, n2)
    return row


def equity_gaps(store: ProjectionStore, filters: Filters, met: Met | None = None) -> dict[str, Any]:
    """Every recorded group against the rest of the rostered district, for every measure
    (with `met`, also the share meeting the dosage standard)."""
    counts = member_counts(store, filters)
    measures = list(MEASURES)
    if met is not None and "all" in counts:  # no roster: nothing to compare
        standard = met_counts(store, filters, met)
        counts = {code: (*c, standard.get(code, 0)) for code, c in counts.items()}
        measures.append(STANDARD)
    everyone = counts.pop("all", None)
    rows: list[dict[str, Any]] = []
    if everyone is None:
        return {"students": 0, "measures": measures, "rows": rows}
    for code in sorted(counts):
        mine = counts[code]
        for i, measure in enumerate(measures, start=1):
            rest = (everyone[i] - mine[i], everyone[0] - mine[0])
            rows.append(gap_row(code, measure, (mine[i], mine[0]), rest))
    return {"students": everyone[0], "measures": measures, "rows": rows}
