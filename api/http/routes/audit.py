"""GET /v1/audit/verify: recompute a district's hash chain from the event store."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tutorledger.api.http.deps import AuditorIn, RuntimeDep
from tutorledger.infra.eventstore.audit import verify_chain

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class Verification(BaseModel):
    """The verify result (DTO kept beside its only route)."""

    district_id: str
    ok: bool
    checked: int = Field(description="Events whose recomputed hash matched, up to the first bad")
    head_position: int | None = Field(description="Position of the last event that verified")
    head_hash: str | None = Field(description="Chain hash at head_position")
    first_bad_position: int | None = Field(
        default=None, description="Lowest position where the stored chain stops verifying"
    )
    problem: str | None = Field(
        default=None,
        description="hash_mismatch | event_missing | index_missing | district_mismatch "
        "| undecodable",
    )


@router.get(
    "/verify",
    response_model=Verification,
    response_model_exclude_none=False,
    summary="Recompute a district's hash chain",
    description=(
        "Decodes every stored event of the district in position order and recomputes "
        '`sha256(prev_hash ‖ "\\n" ‖ canonical JSON of {…event, position})`, comparing '
        "with the chain kept in the store. `ok` false names the `first_bad_position`: a "
        "changed or reordered event fails at its own position, a deleted one at the "
        "district's next event (or at its own, when only half of it was removed)."
    ),
)
def verify(runtime: RuntimeDep, caller: AuditorIn) -> Verification:
    district_id = caller.district_id
    report = verify_chain(runtime.ledger.recorder, runtime.ledger.mapper, district_id)
    return Verification(district_id=district_id, **report.as_dict())
