"""The dashboard's cohorts page: every signed-in key sees the district's cohorts (a dashboard
key sees a small cohort's size withheld, as from the API); an admin records one by uploading
a CSV of student ids, through the same `put_cohort` as `PUT /v1/cohorts/...`.

The upload is a form post: a same-origin check (as /signin and /signout make) on top of the
SameSite=Strict cookie, the admin role, a bounded body, and the whole file checked before
anything is recorded. Student ids are neither logged nor shown back.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Message

from tutorledger.api.dashboard.cohort_upload import (
    MAX_IDS,
    MAX_UPLOAD_BYTES,
    student_ids,
    too_large,
)
from tutorledger.api.dashboard.pages import state
from tutorledger.api.dashboard.routes import PAGE_STATUSES, guarded, signed_in, to_sign_in
from tutorledger.api.dashboard.session import same_origin
from tutorledger.api.http.deps import RuntimeDep, covered
from tutorledger.api.metrics.suppression import EXACT_ROLES
from tutorledger.api.runtime import Runtime
from tutorledger.domain.envelope import DISTRICT_PATTERN, TEXT_PATTERN, DistrictId
from tutorledger.domain.errors import Forbidden, InvalidRequest, ReservedCohortId, TutorLedgerError
from tutorledger.domain.records import put_cohort
from tutorledger.domain.student_groups import is_roster_group
from tutorledger.infra.keys import Principal
from tutorledger.projections.cohorts import list_cohorts
from tutorledger.projections.read_models import current_tables

router = APIRouter(tags=["dashboard"], default_response_class=HTMLResponse, responses=PAGE_STATUSES)
MAX_FORM_OVERHEAD = 64 * 1024  # the other fields and the multipart framing
_COHORT_ID = re.compile(DISTRICT_PATTERN)
_NAME = re.compile(TEXT_PATTERN)


def cohort_rows(runtime: Runtime, principal: Principal, district_id: str) -> dict[str, Any]:
    """The district's cohorts at the projected position, sizes as the key may see them."""
    at = runtime.sync()
    store = runtime.projections
    rows = list_cohorts(store, current_tables(store).cohorts, district_id, at)
    threshold = runtime.settings.district(district_id).suppression_threshold
    exact = principal.role in EXACT_ROLES
    for r in rows:
        r["withheld"] = not exact and 0 < r["size"] < threshold
    return {"rows": rows, "as_of_position": at, "admin": principal.can("admin")}


def _page(
    request: Request, runtime: Runtime, principal: Principal, district_id: str, **extra: Any
) -> HTMLResponse:
    covered(principal, district_id)
    context = {"district_id": district_id, "max_ids": MAX_IDS, "max_mb": MAX_UPLOAD_BYTES >> 20}
    context |= cohort_rows(runtime, principal, district_id) | {"form": {}} | extra
    error = extra.get("error")
    status = error.status if isinstance(error, TutorLedgerError) else 200
    return state(request).render(request, "cohorts.html", context, status=status)


@router.get("/dashboard/{district_id}/cohorts", summary="The district's cohorts (HTML)")
def cohorts_page(request: Request, runtime: RuntimeDep, district_id: DistrictId) -> Response:
    recorded = request.query_params.get("recorded")
    return guarded(
        request, runtime, district_id,
        lambda p: _page(request, runtime, p, district_id, recorded=recorded),
    )  # fmt: skip


@router.post(
    "/dashboard/{district_id}/cohorts",
    summary="Admin: record a cohort from an uploaded CSV of student ids; 303 to the list",
    responses={409: {"description": "reserved_cohort_id", "content": {"text/html": {}}},
               413: {"description": "upload_too_large", "content": {"text/html": {}}}},
)  # fmt: skip
async def upload_cohort(request: Request, runtime: RuntimeDep, district_id: DistrictId) -> Response:
    """Checks in order: session (else to sign-in), district, origin, role (each refused with
    an error page); then the form and the file (refused on the page, form kept); then one
    `put_cohort`."""
    principal = signed_in(request, runtime)
    if principal is None:
        return to_sign_in(request)
    try:
        _may_upload(request, principal, district_id)
    except TutorLedgerError as exc:
        return state(request).error(request, exc, district_id=district_id)
    fields: dict[str, str] = {}
    try:
        form = await _bounded_form(request)
        try:
            fields, data = await _fields(form)
        finally:
            await form.close()
        cohort_id, name = fields["cohort_id"], fields["name"]
        ids = student_ids(data)
        await run_in_threadpool(put_cohort, runtime.ledger, district_id, cohort_id, name, ids)
    except TutorLedgerError as exc:
        refused = exc
    else:
        target = f"/dashboard/{district_id}/cohorts?recorded={quote(cohort_id, safe='')}"
        return RedirectResponse(target, status_code=303)
    return guarded(
        request, runtime, district_id,
        lambda p: _page(request, runtime, p, district_id, error=refused, form=fields),
    )  # fmt: skip


def _may_upload(request: Request, principal: Principal, district_id: str) -> None:
    covered(principal, district_id)
    if not same_origin(request):
        raise Forbidden("cohort uploads must come from this site's own form")
    if not principal.can("admin"):
        raise Forbidden(f"role '{principal.role}' may not record cohorts (admin only)")


async def _bounded_form(request: Request) -> FormData:
    """The multipart form, its body read to at most the upload limit plus the form's framing
    (a larger body is refused as it arrives, whatever Content-Length claims)."""
    limit = MAX_UPLOAD_BYTES + MAX_FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large()
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except HTTPException:
        raise InvalidRequest("the form could not be read; choose a CSV file") from None


async def _fields(form: FormData) -> tuple[dict[str, str], bytes]:
    """The cohort id and name (checked as the API checks them), and the file's bytes."""
    cohort_id, name = form.get("cohort_id"), form.get("name")
    fields = {
        "cohort_id": cohort_id.strip() if isinstance(cohort_id, str) else "",
        "name": name.strip() if isinstance(name, str) else "",
    }
    if not _COHORT_ID.match(fields["cohort_id"]):
        raise InvalidRequest("cohort id: 1 to 64 of A-Z a-z 0-9 _ . -; nothing was recorded")
    if is_roster_group(fields["cohort_id"]):
        raise ReservedCohortId(
            "cohort ids starting 'roster.' are the roster's student groups (import-groups)",
            {"cohort_id": fields["cohort_id"]},
        )
    if not 1 <= len(fields["name"]) <= 200 or not _NAME.match(fields["name"]):
        raise InvalidRequest("name: 1 to 200 characters, no control characters")
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("choose a CSV file of student ids; nothing was recorded")
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    return fields, data
