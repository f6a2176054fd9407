"""The equity-gaps metric's response and its small-cell suppression planner."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tutorledger.api.metrics.schemas import SUPPRESSED_HELP, Count, MetricResponse
from tutorledger.api.metrics.suppression import Plan


class GapRow(BaseModel):
    group: str = Field(description="Roster group code (e.g. ell)")
    label: str
    measure: str = Field(description="reach, regular_use or dosage_standard")
    students: Count = Field(description="The group's rostered students as of the position")
    count: Count = Field(description="Of those, students the measure counts")
    rate: float | None = Field(description="count ÷ students")
    rest_students: Count = Field(description="Rostered students not in the group")
    rest_count: Count
    rest_rate: float | None
    difference: float | None = Field(description="rate − rest_rate (negative: behind)")
    ci_low: float | None = Field(description="95 % Newcombe hybrid score interval, low end")
    ci_high: float | None = Field(description="… high end")
    suppressed: bool = Field(default=False, description=SUPPRESSED_HELP)


class EquityGaps(MetricResponse):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "district_id": "clayton", "as_of_position": 181234, "head_hash": "9f2c…",
                "filters": {"time_zone": "America/New_York"}, "students": 52000,
                "measures": ["reach", "regular_use", "dosage_standard"],
                "rows": [{"group": "ell", "label": "English learners", "measure": "reach",
                          "students": 6000, "count": 480, "rate": 0.08, "rest_students": 46000,
                          "rest_count": 5520, "rest_rate": 0.12, "difference": -0.04,
                          "ci_low": -0.0472, "ci_high": -0.0323}],
            }
        }
    )  # fmt: skip

    students: Count = Field(description="Rostered students of the district as of the position")
    measures: list[str]
    rows: list[GapRow]


def plan_equity(plan: Plan, body: dict[str, Any]) -> None:
    """A group's count and the rest's add up to the district's (shown in every other row of
    the measure), and so do the two sizes: each pair is a line, so withholding one withholds
    the other. Rates, the difference and its interval derive from all four."""
    total = plan.cell(body, "students")
    plan.lines.append([total])
    for r in body["rows"]:
        cells = {n: plan.cell(r, n) for n in ("students", "count", "rest_students", "rest_count")}
        plan.lines.append([cells["students"], cells["rest_students"]])
        plan.lines.append([cells["count"], cells["rest_count"]])
        plan.derived.append(((id(r), "rate"), [cells["count"], cells["students"]]))
        plan.derived.append(((id(r), "rest_rate"), [cells["rest_count"], cells["rest_students"]]))
        for name in ("difference", "ci_low", "ci_high"):
            plan.derived.append(((id(r), name), list(cells.values())))
