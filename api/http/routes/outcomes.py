"""GET /v1/metrics/outcomes: usage vs grades, by band, as of any ledger position."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query

from tutorledger.api.http.csv_response import wants_csv
from tutorledger.api.http.deps import Dashboard, RuntimeDep, check_district
from tutorledger.api.http.insight_schemas import Outcomes
from tutorledger.api.http.routes.metrics import (
    CSV_RESPONSES,
    AsOfQ,
    CohortQ,
    DistrictQ,
    FormatQ,
    Scope,
    build_filters,
)
from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.projections.outcomes import INTERPRETATION, outcomes

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
TermQ = Annotated[str, Query(pattern=DISTRICT_PATTERN, description="A term id as imported")]
DESCRIPTION = f"""
Change in grade (0–100 scale) between `term_from` and `term_to` in one subject, by usage band.

- **Students**: those with a grade in `subject` for both terms (the latest grade recorded for
  each term as of the position); with `cohort_id`, only the cohort's members at the position.
- **Usage**: the student's *completed* sessions in `subject` requested on a local date in the
  window: after `term_from`'s grading date, up to and including `term_to`'s (each term's
  grading date is the `term_end` declared when its grades were imported; `window_start` and
  `window_end` echo the dates used). Bands: `none` (0), `1-2`, `3-9`, `10+`.
- **Figures** per band: `students`, `mean_from`, `mean_to`, `mean_change` (mean of each
  student's later grade minus earlier). Dashboard keys see bands under the district's
  suppression threshold withheld, with complementary suppression across the bands.

Example: a student graded 70 in 2025-fall (graded 2025-12-19) and 78 in 2026-spring (graded
2026-05-29) with 4 completed algebra sessions requested between 2025-12-20 and 2026-05-29
adds 8 to the `3-9` band's mean change.

**{INTERPRETATION}**
"""


@router.get(
    "/outcomes",
    response_model=Outcomes,
    responses={**CSV_RESPONSES, 404: {"description": "Unknown cohort, or a term with no grades"}},
    summary="Usage vs grades: grade change between two terms by usage band",
    description=DESCRIPTION,
)
def get_outcomes(
    runtime: RuntimeDep,
    principal: Dashboard,
    district_id: DistrictQ,
    subject: Annotated[str, Query(pattern=r"^[A-Za-z0-9-]{1,64}$")],
    term_from: TermQ,
    term_to: TermQ,
    cohort_id: CohortQ = None,
    as_of_position: AsOfQ = None,
    output_format: FormatQ = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    check_district(principal, district_id)
    filters, head = build_filters(
        runtime, district_id, None, subject, None, None, None, as_of_position, cohort_id
    )
    profile = runtime.settings.district(district_id)
    scope = Scope(filters, head, profile, wants_csv(output_format, accept), principal.role)
    figures = outcomes(runtime.projections, filters, term_from, term_to)
    body = Outcomes(
        **scope.envelope(),
        subject=filters.subject or subject,
        term_from=term_from,
        term_to=term_to,
        interpretation=INTERPRETATION,
        **figures,
    )
    return scope.answer(body, "outcomes")
