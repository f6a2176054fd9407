"""The dashboard's pages: sign-in, district picker, district view, drill-down, CSV downloads.

HTML for people beside the JSON API for programs; both read the same metric builders. A page
without a valid session shows no figure: it sends the browser to the sign-in form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from tutorledger.api.dashboard import notes, views
from tutorledger.api.dashboard.alert_links import dashboard_links
from tutorledger.api.dashboard.grids import (
    HOTSPOT_LIFT,
    HOTSPOT_MIN_REQUESTS,
    LIFT_LEGEND,
    demand_grid,
    timing_grid,
)
from tutorledger.api.dashboard.pages import ViewQuery, parse_view, state
from tutorledger.api.dashboard.session import (
    clear_cookie,
    current_session,
    principal_of,
    safe_next,
    same_origin,
    set_cookie,
    sign_in,
)
from tutorledger.api.http.deps import RuntimeDep, covered
from tutorledger.api.http.routes.metrics import resolve_scope, with_provider
from tutorledger.api.metrics import csv as csv
from tutorledger.api.metrics.registry import DEMAND, WITH_FILTERS, Keys, Metric
from tutorledger.api.metrics.scope import Scope
from tutorledger.api.metrics.suppression import EXACT_ROLES
from tutorledger.api.runtime import Runtime
from tutorledger.domain.envelope import DistrictId
from tutorledger.domain.errors import Forbidden, InvalidRequest, TutorLedgerError
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.infra.keys import Principal
from tutorledger.projections.districts import known_districts

# Pages answer errors as HTML pages (not the API's JSON error body); sign-in is by cookie,
# so a missing session is a 303 to the form, and a refused key a 401/403 page.
HTML_PAGE: dict[str, Any] = {"text/html": {}}
PAGE_STATUSES: dict[int | str, dict[str, Any]] = {
    303: {"description": "Not signed in: to the sign-in form (after sign-in: to the page)"},
    400: {"description": "The request could not be read", "content": HTML_PAGE},
    401: {"description": "Unknown or missing key", "content": HTML_PAGE},
    403: {"description": "The key may not read this district, or the form came from elsewhere",
          "content": HTML_PAGE},
    404: {"description": "No such page or table", "content": HTML_PAGE},
    422: {"description": "A filter failed validation", "content": HTML_PAGE},
    503: {"description": "The event store or ClickHouse is down; retry", "content": HTML_PAGE},
}  # fmt: skip
router = APIRouter(tags=["dashboard"], default_response_class=HTMLResponse, responses=PAGE_STATUSES)
MAX_SIGNIN_BODY = 4096


def signed_in(request: Request, runtime: Runtime) -> Principal | None:
    return principal_of(request, state(request).signer, runtime.keys, runtime.signouts.ended)


def to_sign_in(request: Request) -> RedirectResponse:
    """No session: back to the sign-in form, remembering the page (its filters included)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/?next={quote(target, safe='')}", status_code=303)


@router.get("/", summary="Sign-in form, or the districts the signed-in key may read")
def home(request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    principal = signed_in(request, runtime)
    pages = state(request)
    if principal is None:
        return pages.render(request, "signin.html", {"next": safe_next(next)})
    if "*" in principal.districts:
        runtime.sync()
        districts = known_districts(runtime.projections)
    else:
        districts = sorted(principal.districts)
    return pages.render(request, "picker.html", {"districts": districts, "role": principal.role})


@router.post("/signin", summary="Form post of an API key; sets the signed session cookie")
async def signin(request: Request, runtime: RuntimeDep) -> Response:
    pages = state(request)
    body = await request.body()
    form = parse_qs(body.decode(errors="replace")) if len(body) <= MAX_SIGNIN_BODY else {}
    target = safe_next(form.get("next", [""])[0])
    try:
        if not same_origin(request):
            raise Forbidden("sign-in must come from this site's own form")
        digest, _ = sign_in(runtime.keys, form.get("key", [""])[0])
    except TutorLedgerError as exc:
        context = {"next": target, "error": exc.message, "code": exc.code}
        return pages.render(request, "signin.html", context, status=exc.status)
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, request, pages.signer.issue(digest))
    return response


@router.post("/signout", summary="Ends the dashboard session, on the server too")
def signout(request: Request, runtime: RuntimeDep) -> Response:
    """The session id is recorded as signed out (every API process refuses it from then
    on, until the cookie would have lapsed), then the browser is told to drop the cookie."""
    response = RedirectResponse("/", status_code=303)
    if same_origin(request):
        session = current_session(request, state(request).signer)
        if session is not None:
            runtime.signouts.end(session.session_id, session.expires_at)
        clear_cookie(response)
    return response


def resolve(runtime: Runtime, principal: Principal, district_id: str, q: ViewQuery) -> Scope:
    """The page's one position and chain head, with the same checks the metrics API makes
    (the session's key must cover the district: pages authenticate by cookie, not by the
    API's bearer dependency)."""
    scope = resolve_scope(
        runtime, covered(principal, district_id), q.school_id, q.subject, q.grade, q.date_from,
        q.date_to, q.as_of_position, q.cohort_id, csv=False,
    )  # fmt: skip
    return with_provider(scope, q.provider)


def page_context(
    request: Request, runtime: Runtime, scope: Scope, q: ViewQuery, known: dict[str, Any]
) -> dict[str, Any]:
    """What every figure page shows besides its figures: filters, freshness, reproduce link.
    `known` holds what the page's figures already found (the schools, the subjects)."""
    fresh = views.freshness(runtime, scope, q.as_of_position)
    reproduce = request.url.path + q.query(as_of_position=fresh.as_of_position)  # no Host
    store = runtime.projections
    all_schools = known.get("known_schools") or views.schools(
        store, views.narrowed(scope, school_id=None)
    )
    return {
        "district_id": scope.filters.district_id,
        "q": q,
        "fresh": fresh,
        "reproduce_url": reproduce,
        "all_schools": all_schools,
        "names": {s.school_id: s.name for s in all_schools},
        "subjects": known.get("known_subjects") or subject_options(store, scope),
        "cohorts": views.cohort_options(store, scope),
        "providers": known["known_providers"]
        if "known_providers" in known
        else provider_options(store, scope),
        "time_zone": scope.filters.tz,
        "widened": notes.widened(scope),
    }


def subject_options(store: ProjectionStore, scope: Scope) -> list[str]:
    wide = views.narrowed(scope, subject=None)
    found = views.answer(store, wide, DEMAND, ("subject",)).model_dump()["rows"]
    return sorted(str(r["subject"]) for r in found)


def provider_options(store: ProjectionStore, scope: Scope) -> list[str]:
    """The providers the district's sessions name at the page's position, for the provider
    picker (shown when there are several; sessions without provenance name none)."""
    wide = views.narrowed(scope, provider=None)
    found = views.answer(store, wide, DEMAND, ("provider",)).model_dump()["rows"]
    return sorted(str(r["provider"]) for r in found if r["provider"])


Figures = Callable[[Request, Runtime, Scope], dict[str, Any]]


def figure_page(
    request: Request,
    runtime: Runtime,
    district_id: str,
    template: str,
    figures: Figures,
    *,
    query: Callable[[ViewQuery], ViewQuery] = lambda q: q,
) -> Response:
    """Filters, scope, page context, then the page's own figures, inside `guarded`.

    `query` narrows the filters read from the URL to those the page honours.
    """

    def answer(principal: Principal) -> Response:
        q = query(parse_view(request))
        scope = resolve(runtime, principal, district_id, q)
        shown = figures(request, runtime, scope)
        context = page_context(request, runtime, scope, q, shown) | shown
        return state(request).render(request, template, context)

    return guarded(request, runtime, district_id, answer)


def guarded(
    request: Request, runtime: Runtime, district_id: str, answer: Callable[[Principal], Response]
) -> Response:
    """No session: to the sign-in form. A typed error: an error page with its status."""
    principal = signed_in(request, runtime)
    if principal is None:
        return to_sign_in(request)
    try:
        return answer(principal)
    except TutorLedgerError as exc:
        return state(request).error(request, exc, district_id=district_id)


def _district_figures(_request: Request, runtime: Runtime, scope: Scope) -> dict[str, Any]:
    figures = views.district_view(runtime.projections, scope)
    f = scope.filters
    return {
        "f": figures,
        # Without a school (a subject) filter the page's own answers list every school
        # (subject) the filter form offers: the form needs no query of its own.
        "known_schools": figures.schools if f.school_id is None else None,
        "known_subjects": None
        if f.subject is not None
        else sorted({str(r["subject"]) for r in figures.demand.view["rows"]}),
        "grid": demand_grid(figures.demand.view["rows"]),
        "hours": timing_grid(figures.timing.view["rows"]),
        "lift_legend": LIFT_LEGEND,
        "hotspot_rule": {"lift": HOTSPOT_LIFT, "requests": HOTSPOT_MIN_REQUESTS},
        "alert_links": dashboard_links,
        "threshold": scope.profile.suppression_threshold,
        "exact": scope.role in EXACT_ROLES,
    }


@router.get("/dashboard/{district_id}", summary="District view (HTML); filters in the URL")
def district_page(request: Request, runtime: RuntimeDep, district_id: DistrictId) -> Response:
    return figure_page(request, runtime, district_id, "district.html", _district_figures)


def _drill_figures(_request: Request, runtime: Runtime, scope: Scope) -> dict[str, Any]:
    figures = {k: v.view for k, v in views.drill_view(runtime.projections, scope).items()}
    rows = figures["satisfaction"]["rows"] = [
        notes.with_rates_withheld(r) for r in figures["satisfaction"]["rows"]
    ]
    threshold = scope.profile.suppression_threshold
    # The district's providers (not only this cell's), so the picker is the district page's.
    district = views.narrowed(scope, school_id=None, subject=None, grade=None)
    return {
        "f": figures,
        "known_providers": provider_options(runtime.projections, district),
        "helped_withheld": notes.rate_withheld(rows[0] if rows else None, threshold),
        "threshold": threshold,
        "exact": scope.role in EXACT_ROLES,
    }


@router.get("/dashboard/{district_id}/drill", summary="One school × subject by grade and week")
def drill_page(request: Request, runtime: RuntimeDep, district_id: DistrictId) -> Response:
    return figure_page(request, runtime, district_id, "drill.html", _drill_figures)


Table = Callable[[ProjectionStore, Scope], BaseModel]


def _metric_table(metric: Metric[Keys], keys: Keys | None) -> Table:
    return lambda store, scope: views.answer(store, scope, metric, keys)


# Each metric's dashboard tables come from its registry entry; the rest are composed here.
METRIC_TABLES = {f.table: (m, f.keys) for m in WITH_FILTERS for f in m.tables}
CSV_TABLES: dict[str, Table] = {
    **{name: _metric_table(m, keys) for name, (m, keys) in METRIC_TABLES.items()},
    "headline": views.headline,
    "reach-by-school": views.reach_by_school_table,
    "reach-trend": views.reach_trend_table,
    "use-by-month": views.use_by_month_table,
    "drill-grades": views.drill_grades,
}


@router.get("/dashboard/{district_id}/csv/{table}", summary="A dashboard table as CSV")
def csv_download(
    request: Request, runtime: RuntimeDep, district_id: DistrictId, table: str
) -> Response:
    """The table beside which the link sits, as CSV: the API's CSV for the same filters."""

    def answer(principal: Principal) -> Response:
        build = CSV_TABLES.get(table)
        if build is None:
            raise InvalidRequest(f"no table named '{table}'", {"tables": sorted(CSV_TABLES)})
        scope = resolve(runtime, principal, district_id, parse_view(request))
        metric = METRIC_TABLES.get(table)
        rows_of = metric[0].csv_rows if metric else csv.table
        return csv.csv_response(build(runtime.projections, scope), table, rows_of)

    return guarded(request, runtime, district_id, answer)
