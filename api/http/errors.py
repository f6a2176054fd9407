"""The one place that turns errors into HTTP responses in the contract's shape."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from tutorledger.domain.errors import TutorLedgerError
from tutorledger.infra.outages import OUTAGE_ERRORS, RETRY_AFTER_SECONDS

log = logging.getLogger(__name__)
HTTP_CODES = {
    400: "malformed_json",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    extra = dict(headers or {})
    if status == 401:
        extra["WWW-Authenticate"] = "Bearer"
    if status == 503:
        extra.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return JSONResponse({"error": body}, status_code=status, headers=extra or None)


def allowed(request: Request) -> list[str]:
    """Every method some route of the path answers: Starlette's 405 names only the first
    route whose path matched, and a path may have one route per method (GET page, POST form)."""
    methods: set[str] = set()
    for route in _leaves(request.app.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _leaves(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes themselves, inside the wrappers FastAPI puts around included routers."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _leaves(inner.routes) if inner is not None else (route,)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TutorLedgerError)
    async def _domain(_: Request, exc: TutorLedgerError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        malformed = any(d["type"] == "json_invalid" for d in details)
        code, status = ("malformed_json", 400) if malformed else ("invalid_request", 422)
        return error_response(status, code, "request failed validation", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        # Keep the exception's headers: a 405 must say which methods are Allow-ed.
        headers = exc.headers
        methods = allowed(request) if exc.status_code == 405 else []
        if methods:  # else Starlette's own header stands
            headers = {**(headers or {}), "Allow": ", ".join(methods)}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    async def _outage(_: Request, exc: Exception) -> JSONResponse:
        log.warning("dependency unavailable", extra={"error_type": type(exc).__name__})
        return error_response(503, "unavailable", "a server this needs is down; retry later")

    for outage in OUTAGE_ERRORS:
        app.add_exception_handler(outage, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, __: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see server logs")
