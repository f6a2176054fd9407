"""Security against a live server: the auth matrix, keys kept out of logs, security headers.

The matrix enumerates the secured operations from the server's own /openapi.json, so a route
added later is covered (or fails here until its required role is named in REQUIRED).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import installed
import live
import pytest
from builders import at_minute, write_keys

pytestmark = pytest.mark.e2e

D1, D2 = "sec-1", "sec-2"
ROLES = ("emitter", "dashboard", "auditor", "admin")
SCOPES = {"all": ["*"], "d1": [D1], "d2": [D2]}
KEYS = {f"{role}-{scope}": f"sec-{role}-{scope}-{uuid.uuid4().hex}" for role in ROLES
        for scope in SCOPES}  # fmt: skip
UNKNOWN_KEY = "sec-unknown-" + uuid.uuid4().hex
# No key, an unknown one, another scheme, a bare scheme, a known key with a byte more.
UNAUTHENTICATED = [
    None,
    f"Bearer {UNKNOWN_KEY}",
    "Basic YWRtaW46YWRtaW4=",
    "Bearer",
    f"Bearer {KEYS['admin-all']}x",
    f"bearer{KEYS['admin-all']}",
]
# The least role each operation needs, by (method, path prefix); the contract's table.
REQUIRED = [
    ("POST", "/v1/events", "emitter"),
    ("GET", "/v1/metrics/", "dashboard"),
    ("GET", "/v1/schools", "dashboard"),
    ("GET", "/v1/alerts", "dashboard"),
    ("GET", "/v1/alerts/", "auditor"),
    ("GET", "/v1/sessions/", "auditor"),
    ("GET", "/v1/audit/", "auditor"),
    ("GET", "/v1/dosage-standard/", "auditor"),
    ("GET", "/v1/exports/", "admin"),
    ("PUT", "/v1/schools/", "admin"),
    ("PUT", "/v1/cohorts/", "admin"),
    ("GET", "/v1/cohorts", "dashboard"),
    ("POST", "/v1/admin/", "admin"),
    ("", "/v1/privacy/", "admin"),
]
GRANTS = {
    "emitter": {"emitter"},
    "dashboard": {"dashboard"},
    "auditor": {"dashboard", "auditor"},
    "admin": {"emitter", "dashboard", "auditor", "admin"},
}
PARAMS = {"district_id": D1, "session_id": "s-1", "school_id": "s1", "student_id": "st-1",
          "as_of": "2026-01-05", "cohort_id": "c1"}  # fmt: skip


@dataclass
class Live:
    client: httpx.Client
    server: live.Proc
    openapi: dict[str, Any]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("security")
    specs = [
        {"key_sha256": hashlib.sha256(key.encode()).hexdigest(), "role": name.split("-")[0],
         "districts": SCOPES[name.split("-")[1]]}
        for name, key in KEYS.items()
    ]  # fmt: skip
    keys = write_keys(tmp / "keys.json", specs)
    env = live.embedded_env(tmp, keys, TUTORLEDGER_LOG_LEVEL="DEBUG")
    server = live.serve(env, tmp / "serve.log", cli=installed.cli())
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            events = [at_minute(D1, "s-1", "requested", 1, school_id="s1", student_id="st-1",
                                grade=3, subject="math")]  # fmt: skip
            admin = {"Authorization": f"Bearer {KEYS['admin-all']}"}
            assert client.post("/v1/events", json={"events": events}, headers=admin).is_success
            yield Live(client, server, client.get("/openapi.json").json())
    finally:
        server.stop()


def secured_operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in openapi["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and op.get("security")
    ]


def required_role(method: str, path: str) -> str:
    for want_method, prefix, role in REQUIRED:
        if (not want_method or want_method == method) and path.startswith(prefix):
            if prefix.endswith("/") or path == prefix:
                return role
    raise AssertionError(f"{method} {path}: name its required role in REQUIRED")


def body_for(method: str, path: str) -> Any:
    if path == "/v1/events":
        return {"events": [at_minute(D1, f"m-{uuid.uuid4().hex[:8]}", "requested", 2,
                                     school_id="s1", student_id="st-2", grade=3,
                                     subject="math")]}  # fmt: skip
    if path.startswith("/v1/schools/"):
        return {"name": "School", "enrollment": {"3": 10}, "as_of": "2026-01-05"}
    if path.startswith("/v1/cohorts/"):
        return {"name": "Cohort", "student_ids": ["st-2"]}
    return {"reason": "security matrix"} if method in ("POST", "PUT") else None


def request(api: Live, method: str, path: str, op: dict[str, Any], auth: str | None) -> int:
    query = {
        p["name"]: PARAMS.get(p["name"], "x")
        for p in op.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    url = re.sub(r"\{(\w+)\}", lambda m: PARAMS.get(m.group(1), "x"), path)
    headers = {"X-Purpose": "security test"}
    if auth is not None:
        headers["Authorization"] = auth
    response = api.client.request(
        method, url, params=query, json=body_for(method, path), headers=headers
    )
    return response.status_code


def expected(method: str, path: str, op: dict[str, Any], role: str, scope: str) -> str:
    """403 unless the role grants the route and the key covers its district; a route with no
    district (rebuild) affects them all and needs a key for '*'."""
    if required_role(method, path) not in GRANTS[role]:
        return "403"
    names = {p["name"] for p in op.get("parameters", [])}
    per_district = "district_id" in names or path == "/v1/events"
    if scope == "d2" or (not per_district and scope != "all"):
        return "403"
    return "allowed"


def test_auth_matrix_every_route_role_and_district(api: Live) -> None:
    operations = secured_operations(api.openapi)
    assert len(operations) >= 10
    wrong: list[str] = []
    checked = 0
    for method, path, op in operations:
        for auth in UNAUTHENTICATED:
            status = request(api, method, path, op, auth)
            checked += 1
            if status != 401:
                wrong.append(f"{method} {path} auth={auth!r}: {status}, want 401")
        for role in ROLES:
            for scope in SCOPES:
                status = request(api, method, path, op, f"Bearer {KEYS[f'{role}-{scope}']}")
                checked += 1
                want = expected(method, path, op, role, scope)
                ok = status == 403 if want == "403" else status not in (401, 403)
                if not ok:
                    wrong.append(f"{method} {path} {role}/{scope}: {status}, want {want}")
    print(f"auth matrix: {len(operations)} operations, {checked} requests")  # noqa: T201
    assert not wrong, "\n".join(wrong)


def test_keys_never_reach_the_logs(api: Live) -> None:
    for key in [*KEYS.values(), UNKNOWN_KEY]:
        api.client.get("/v1/metrics/participation", params={"district_id": D1},
                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        api.client.get("/v1/metrics/participation", params={"district_id": "bad id"},
                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    logs = Path(api.server.log_path).read_text(errors="replace")
    assert '"level": "debug"' in logs or '"level": "info"' in logs, logs[-2000:]
    for key in [*KEYS.values(), UNKNOWN_KEY]:
        assert key not in logs
        assert hashlib.sha256(key.encode()).hexdigest() not in logs


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@pytest.mark.parametrize(
    ("path", "key", "status"),
    [
        ("/v1/metrics/participation?district_id=sec-1", "admin-all", 200),
        ("/v1/metrics/participation?district_id=sec-1", None, 401),
        ("/v1/metrics/participation?district_id=sec-1", "emitter-all", 403),
        ("/v1/nowhere", None, 404),
        ("/docs", None, 200),
        ("/openapi.json", None, 200),
        ("/metrics", None, 200),
        ("/healthz", None, 200),
    ],
)
def test_security_headers_on_every_kind_of_answer(
    api: Live, path: str, key: str | None, status: int
) -> None:
    headers = {"Authorization": f"Bearer {KEYS[key]}"} if key else {}
    response = api.client.get(path, headers=headers)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    if path == "/docs":  # vendored Swagger UI: the origin only, nothing inline
        assert "default-src 'none'" in policy and "script-src 'self';" in policy
        assert "unsafe-inline" not in policy
    elif response.headers["content-type"].startswith("text/html"):
        assert "default-src 'self'" in policy
    else:
        assert "default-src 'none'" in policy


def test_405_names_the_allowed_methods(api: Live) -> None:
    response = api.client.request("DELETE", "/v1/events")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
