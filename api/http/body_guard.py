"""Hostile bodies stop here, before any route runs: too large, not UTF-8, not JSON, nested too
deep, or with a key given twice (JSON parsers keep the last one silently, so an emitter's
`{"grade": 3, "grade": 30}` would be stored as something nobody can see it sent).

A write to an API route (`/v1/…`) must name a known key before its body is read: an
unknown caller's body is never buffered nor parsed (401 at once; the route's own role and
district checks come later, as for any request).

A pure ASGI middleware: the body is read once, bounded by the size limit, checked, then
replayed to the app unchanged. Only bodies that FastAPI would read as JSON are parsed; the
parsed value is left in the request's state (`parsed_body`) for routes that take it from
there instead of parsing it again.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tutorledger.api.http.errors import error_response

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEYED_PREFIX = "/v1/"  # every API route needs a bearer key (the dashboard uses cookies)
PARSED = "tutorledger_json_body"  # where the parsed body is left, in the request's state
NOT_PARSED = object()


def parsed_body(request: Request) -> Any:
    """The JSON body this guard parsed and checked (NOT_PARSED: empty, or not JSON), so a
    route taking large bodies need not parse them again."""
    return request.scope.get("state", {}).get(PARSED, NOT_PARSED)


class _Rejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise _Rejected(422, "duplicate_key", f"key {twice!r} appears twice in one object")
    return obj


# A `\uD800`-`\uDFFF` escape: legal JSON syntax, but alone it encodes no character, and no
# UTF-8 store, hash or response can hold it. Only bodies containing one are walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def check_json(body: bytes) -> Any:
    """The parsed body; raise _Rejected unless it is UTF-8 JSON with unique keys (an empty
    body is left to the app: NOT_PARSED)."""
    if not body.strip():
        return NOT_PARSED
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Rejected(400, "malformed_json", f"body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        lone = _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(value)
    except RecursionError:
        raise _Rejected(400, "malformed_json", "body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise _Rejected(400, "malformed_json", f"body is not JSON: {exc.msg}") from None
    if lone:
        raise _Rejected(400, "malformed_json", "body holds a lone UTF-16 surrogate escape")
    return value


def _is_json(scope: Scope) -> bool:
    headers = dict(scope.get("headers", []))
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return (
        not content_type or content_type == b"application/json" or content_type.endswith(b"+json")
    )


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _unauthenticated(scope: Scope) -> _Rejected | None:
    """401 for a write to an API route without a known bearer key (the same answer the
    route's dependency would give), decided before a byte of the body is read. A path or
    method no route takes is left to the router (404/405, as without this check)."""
    if not scope["path"].startswith(KEYED_PREFIX):
        return None
    app = scope.get("app")
    router = getattr(app, "router", None)
    routes = getattr(router, "routes", [])
    if not any(route.matches(scope)[0] == Match.FULL for route in routes):
        return None
    keys = getattr(getattr(app.state, "runtime", None), "keys", None) if app else None
    scheme, token = get_authorization_scheme_param(_header(scope, b"authorization"))
    if scheme.lower() != "bearer" or not token or keys is None:
        return _Rejected(401, "unauthorized", "missing bearer API key")
    if keys.authenticate(token) is None:
        return _Rejected(401, "unauthorized", "unknown API key")
    return None


class BodyGuard:
    """413 over `max_bytes`; 400/422 for bodies that are not clean JSON; else pass through."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        try:
            refused = _unauthenticated(scope)
            if refused is not None:
                raise refused
            body = await self._read(scope, receive)
            if _is_json(scope):
                scope.setdefault("state", {})[PARSED] = check_json(body)
        except _Rejected as rejected:
            response = error_response(rejected.status, rejected.code, rejected.message)
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        limit = f"body over the {self.max_bytes}-byte limit"
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            raise _Rejected(413, "payload_too_large", limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _Rejected(413, "payload_too_large", limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the client to disconnect

    return replay
