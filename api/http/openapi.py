"""The OpenAPI document states every status a route can answer, with the error schema.

Rules applied to every operation, so routes added later are covered without extra code:
secured operations (a bearer key) can answer 401, 403 and 503 (the store or ClickHouse is
down); operations with parameters or a body can answer 422; operations with a body can answer
400 (not JSON) and 413 (over the size limit). FastAPI's own 422 schema is replaced by ours,
because the error handler answers in our shape. A route declares its other statuses (404,
409, …) in its decorator; one given without content gets the error schema here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tutorledger.api.http.schemas import ErrorResponse

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
METHODS = ("get", "put", "post", "delete", "patch")
# Headers a route requires but checks itself, after auth and district (so a missing or blank
# one is a 422 with its own code, never ahead of a 401/403): documented as required, with the
# constraint the route applies.
ALWAYS_REQUIRED: dict[str, dict[str, Any]] = {"X-Purpose": {"pattern": r"\S"}}
DESCRIPTIONS = {
    "400": "Body is not JSON (`malformed_json`); nothing stored",
    "401": "No key, or an unknown key (`unauthorized`)",
    "403": "The key's role or districts do not allow this (`forbidden`)",
    "404": "Not found (`not_found`)",
    "409": "Conflicts with work in progress",
    "413": "Body over the request size limit (`payload_too_large`); nothing stored",
    "422": "Request failed validation (`invalid_request`); nothing stored",
    "503": "The event store or ClickHouse is down (`unavailable`); retry after `Retry-After`",
}


def _error(status: str) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": ERROR_REF}},
    }


def _statuses(operation: dict[str, Any]) -> list[str]:
    """The generic statuses this operation can answer, by what it takes."""
    found: list[str] = []
    if operation.get("security"):
        found += ["401", "403", "503"]
    if operation.get("parameters") or operation.get("requestBody"):
        found.append("422")
    if operation.get("requestBody"):
        found += ["400", "413"]
    return found


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error responses and the error schema to an OpenAPI document, in place."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema
    for path_item in schema.get("paths", {}).values():
        for method in METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            for parameter in operation.get("parameters", []):
                extra = ALWAYS_REQUIRED.get(parameter.get("name", ""))
                if extra is not None:
                    parameter["required"] = True
                    declared = parameter.get("schema", {})
                    # A required header is never null: keep the string branch of Optional[str].
                    strings = [d for d in declared.get("anyOf", []) if d.get("type") == "string"]
                    parameter["schema"] = {**(strings[0] if strings else declared), **extra}
            responses = operation.setdefault("responses", {})
            for status in _statuses(operation):
                if status == "422" or status not in responses:
                    responses[status] = _error(status)
            for status, response in responses.items():
                if status[0] in "45" and "content" not in response:
                    response.update(_error(status) | {"description": response["description"]})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def order_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """Each operation's parameters in reading order, in place: path parameters as the path
    names them, then `district_id`, then the rest as declared. (FastAPI lists a route's own
    parameters before those of its dependencies, so the district that the district-scope
    dependency reads would otherwise come last.)"""
    for path, path_item in schema.get("paths", {}).items():
        for method in METHODS:
            operation = path_item.get(method)
            if operation is None or "parameters" not in operation:
                continue
            operation["parameters"].sort(key=lambda p: _reading_order(path, p))
    return schema


def _reading_order(path: str, parameter: dict[str, Any]) -> tuple[int, int]:
    if parameter.get("in") == "path":
        return 0, path.find("{" + str(parameter.get("name")) + "}")
    return (1 if parameter.get("name") == "district_id" else 2), 0


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = order_parameters(document_errors(schema))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
