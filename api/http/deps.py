"""Request dependencies: the runtime, the authenticated caller and the district it reads.

A route that reads or writes one district names it once, by taking `DashboardIn`,
`AuditorIn` or `AdminIn`: the dependency authenticates the key, checks its role, reads
`district_id` (from the path when the route's path names it, else from the query, typed
`DistrictId` either way) and refuses a district the key does not cover, before the route's
own parameters or body are looked at (so 403 comes ahead of any 422 about the body).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tutorledger.api.runtime import Runtime
from tutorledger.domain.envelope import DistrictId
from tutorledger.domain.errors import Forbidden, Unauthorized
from tutorledger.infra.keys import Capability, Principal

_bearer = HTTPBearer(auto_error=False, description="API key from TUTORLEDGER_API_KEYS_FILE")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_principal(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or runtime.keys is None:
        raise Unauthorized("missing bearer API key")
    principal = runtime.keys.authenticate(credentials.credentials)
    if principal is None:
        raise Unauthorized("unknown API key")
    return principal


@cache  # one dependency per capability, so FastAPI runs it once per request
def require(capability: Capability) -> Callable[[Principal], Principal]:
    """Dependency factory: the caller's role must grant `capability` (else 403)."""

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.can(capability):
            raise Forbidden(f"role '{principal.role}' may not do this")
        return principal

    return check


@dataclass(frozen=True)
class InDistrict:
    """A caller whose key covers `district_id`: only `covered` makes one."""

    principal: Principal
    district_id: str


def covered(principal: Principal, district_id: str) -> InDistrict:
    """The caller in `district_id`, or 403 when the key does not cover it.

    Routes get this from the `…In` dependencies below. Called by hand only where the district
    is not a path or query parameter: each event of a POST /v1/events batch names its own
    district in the body, and the dashboard's pages authenticate by session cookie (their
    errors are HTML pages, not the API's JSON)."""
    if not principal.covers(district_id):
        raise Forbidden(f"this key is not valid for district '{district_id}'")
    return InDistrict(principal, district_id)


@cache
def in_district(capability: Capability) -> Callable[[str, Principal], InDistrict]:
    """Dependency factory: a key with `capability` that covers the requested district."""

    # The dependency is a default, not an annotation: annotations here are strings, read in
    # the module's namespace, where `capability` is unknown.
    def scoped(
        district_id: DistrictId, principal: Principal = Depends(require(capability))
    ) -> InDistrict:
        return covered(principal, district_id)

    return scoped


Emitter = Annotated[Principal, Depends(require("emit"))]
Admin = Annotated[Principal, Depends(require("admin"))]
DashboardIn = Annotated[InDistrict, Depends(in_district("read_metrics"))]
AuditorIn = Annotated[InDistrict, Depends(in_district("read_sessions"))]
AdminIn = Annotated[InDistrict, Depends(in_district("admin"))]
