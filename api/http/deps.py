"""Request dependencies: the runtime and the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tutorledger.api.runtime import Runtime
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


def require(capability: Capability) -> Callable[[Principal], Principal]:
    """Dependency factory: the caller's role must grant `capability` (else 403)."""

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.can(capability):
            raise Forbidden(f"role '{principal.role}' may not do this")
        return principal

    return check


def check_district(principal: Principal, district_id: str) -> None:
    if not principal.covers(district_id):
        raise Forbidden(f"this key is not valid for district '{district_id}'")


Emitter = Annotated[Principal, Depends(require("emit"))]
Dashboard = Annotated[Principal, Depends(require("read_metrics"))]
Auditor = Annotated[Principal, Depends(require("read_sessions"))]
Admin = Annotated[Principal, Depends(require("admin"))]
