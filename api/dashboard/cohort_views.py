"""The dashboard's outcomes page: usage vs grades by band, from the API route's own builder.

It takes the cohort picker and `as_of_position` from the page URL, and its own choices
(subject, the two terms; defaults: the first graded subject and the two latest terms). The
district view's other filters do not apply: grades belong to students, not to a school day.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tutorledger.api.dashboard.pages import ID_PATTERN, SUBJECT_PATTERN, ViewQuery
from tutorledger.api.dashboard.routes import PAGE_STATUSES, figure_page
from tutorledger.api.http.deps import RuntimeDep
from tutorledger.api.metrics.registry import OUTCOMES, Terms
from tutorledger.api.metrics.scope import Scope
from tutorledger.domain.envelope import DistrictId
from tutorledger.domain.errors import InvalidRequest
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.outcomes import grade_options

router = APIRouter(tags=["dashboard"], default_response_class=HTMLResponse, responses=PAGE_STATUSES)


class OutcomesChoice(BaseModel):
    """The outcomes page's own choices, from its URL (blank = the page's default)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    subject: str | None = Field(default=None, pattern=SUBJECT_PATTERN)
    term_from: str | None = Field(default=None, pattern=ID_PATTERN)
    term_to: str | None = Field(default=None, pattern=ID_PATTERN)


def _choice(request: Request) -> OutcomesChoice:
    raw = {k: v for k, v in request.query_params.items() if v}
    try:
        return OutcomesChoice.model_validate(raw)
    except ValidationError as exc:
        details = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        raise InvalidRequest("a choice in the address is not valid", details) from None


def outcome_figures(store: ProjectionStore, scope: Scope, choice: OutcomesChoice) -> dict[str, Any]:
    """The page's choices with their defaults and, once two terms exist, the outcomes answer
    as the caller's role may see it (small bands withheld for dashboard keys)."""
    subjects, terms = grade_options(store, scope.filters)
    names = [t for t, _ in terms]
    subject = choice.subject or (subjects[0] if subjects else None)
    term_to = choice.term_to or (names[-1] if names else None)
    term_from = choice.term_from or (names[-2] if len(names) > 1 else None)
    context: dict[str, Any] = {"grade_subjects": subjects, "terms": terms, "outcomes": None}
    context |= {"subject": subject, "term_from": term_from, "term_to": term_to}
    if subject and term_from and term_to:
        context["outcomes"] = OUTCOMES.answer(store, scope, Terms(subject, term_from, term_to))
    return context


def _narrowed(asked: ViewQuery) -> ViewQuery:
    return ViewQuery(cohort_id=asked.cohort_id, as_of_position=asked.as_of_position)


@router.get("/dashboard/{district_id}/outcomes", summary="Usage vs grades by band (HTML)")
def outcomes_page(
    request: Request,
    runtime: RuntimeDep,
    district_id: DistrictId,
) -> Response:
    return figure_page(
        request, runtime, district_id, "outcomes.html",
        lambda req, rt, scope: outcome_figures(rt.projections, scope, _choice(req)),
        query=_narrowed,
    )  # fmt: skip
