"""The dashboard's "students who need it most" page: roster groups side by side with their
gaps against the rest of the district, from the equity-gaps metric's own builder.

It takes the date range, the provider and `as_of_position` from the page URL (they choose
which requests count); the comparison is district-wide, so the school, grade, subject and
cohort filters do not apply.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tutorledger.api.dashboard.marks import Shown
from tutorledger.api.dashboard.pages import ViewQuery
from tutorledger.api.dashboard.routes import PAGE_STATUSES, figure_page
from tutorledger.api.http.deps import RuntimeDep
from tutorledger.api.metrics.registry import EQUITY_GAPS
from tutorledger.api.metrics.scope import Scope
from tutorledger.domain.envelope import DistrictId
from tutorledger.infra.clickhouse import ProjectionStore

router = APIRouter(tags=["dashboard"], default_response_class=HTMLResponse, responses=PAGE_STATUSES)


def equity_figures(store: ProjectionStore, scope: Scope) -> dict[str, Any]:
    """The equity-gaps answer as the caller may see it, one line per group with its measures
    side by side, widest gap behind first (withheld gaps last)."""
    exact = EQUITY_GAPS.compute(store, scope, ())
    data = Shown.of(exact, scope.protect(exact, EQUITY_GAPS)).view  # withheld cells marked
    by_group: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in data["rows"]:
        by_group[row["group"]][row["measure"]] = row
    lines = [{"group": g, "label": next(iter(m.values()))["label"], "measures": m}
             for g, m in by_group.items()]  # fmt: skip
    lines.sort(key=_widest_first)
    standard = scope.profile.dosage_standard
    return {"equity": data, "lines": lines, "measures": data["measures"], "standard": standard}


def _widest_first(line: dict[str, Any]) -> tuple[bool, float, str]:
    gap = line["measures"].get("reach", {}).get("difference")
    shown = isinstance(gap, float)
    return not shown, gap if shown else 0.0, str(line["group"])


def _narrowed(asked: ViewQuery) -> ViewQuery:
    return ViewQuery.model_validate(
        {
            "from": asked.date_from,
            "to": asked.date_to,
            "as_of_position": asked.as_of_position,
            "provider": asked.provider,
        }  # fmt: skip
    )


@router.get("/dashboard/{district_id}/groups", summary="Students who need it most (HTML)")
def groups_page(request: Request, runtime: RuntimeDep, district_id: DistrictId) -> Response:
    return figure_page(
        request, runtime, district_id, "groups.html",
        lambda _req, rt, scope: equity_figures(rt.projections, scope),
        query=_narrowed,
    )  # fmt: skip
