"""POST /v1/admin/rebuild: rebuild the projections from the ledger and swap them in."""

from __future__ import annotations

import threading

from fastapi import APIRouter
from pydantic import BaseModel

from tutorledger.api.http.deps import Admin, RuntimeDep
from tutorledger.consumers.rebuild import rebuild
from tutorledger.domain.errors import Forbidden, RebuildInProgress

router = APIRouter(prefix="/v1/admin", tags=["admin"])

# One rebuild per process at a time: a second would race the first for the staging table.
_rebuilding = threading.Lock()


class Rebuilt(BaseModel):
    events: int
    position: int
    seconds: float
    events_per_second: float


@router.post(
    "/rebuild",
    response_model=Rebuilt,
    responses={409: {"description": "A rebuild is already running (`rebuild_in_progress`)"}},
    summary="Rebuild all projections from the ledger",
    description=(
        "Replays the whole ledger into a fresh table and swaps it in with one RENAME; "
        "readers keep the old figures until the swap and never see a half-built table. "
        "Answers when done. A second request while one runs gets 409 "
        "`rebuild_in_progress`. Needs an admin key valid for all districts (`*`)."
    ),
)
def post_rebuild(runtime: RuntimeDep, principal: Admin) -> Rebuilt:
    if "*" not in principal.districts:
        raise Forbidden("rebuilding affects every district: needs a key for '*'")
    if not _rebuilding.acquire(blocking=False):
        raise RebuildInProgress("a rebuild is already running in this process")
    try:
        report = rebuild(
            runtime.ledger,
            runtime.projections,
            batch_size=runtime.settings.projector_batch_size,
            guard=runtime.swap_projections,
        )
    finally:
        _rebuilding.release()
    return Rebuilt(
        events=report.events,
        position=report.position,
        seconds=round(report.seconds, 3),
        events_per_second=round(report.rate, 1),
    )
