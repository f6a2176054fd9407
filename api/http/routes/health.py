"""Liveness, readiness with lag, and Prometheus metrics.

None of them waits behind figure queries: `/healthz` runs on the event loop and touches
nothing (no sync dependency either: FastAPI would run it on a shared worker thread);
`/readyz` and `/metrics` run their checks on threads of their own (not the worker threads
sync routes share, which slow figure requests may hold), give the projection store
`HEALTH_SECONDS` (a store busy answering figures is reported `busy`, not down), and answer
within `2 × HEALTH_SECONDS` whatever happens.

Ledger positions (the head, the projected and relayed positions) are shown only to a
request with a valid API key; without one, the answers say what is reachable and how far
behind the figures are (`projection_lag`, `relay_lag`), which the compose healthchecks and
load tests read.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, Field

from tutorledger.api.http.deps import get_runtime
from tutorledger.api.runtime import Runtime
from tutorledger.domain.errors import QueryTimeout
from tutorledger.infra.clickhouse import query_budget

router = APIRouter(tags=["health"])
HEALTH_THREADS = 2  # threads readiness checks may hold at once (their own, see app.py)
HEALTH_SECONDS = 2.0
POSITIONS = ("head_position", "position")  # hidden from requests without a key


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Any] = Field(
        description="event_store, projections, stream (and relay in Kafka mode), each with "
        "`ok`; `projection_lag` (and `relay_lag`): ledger events not yet in the figures"
    )


READINESS = {"model": Readiness}


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def readiness(runtime: Runtime) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    head = projected = None
    try:
        head = runtime.ledger_head()
        checks["event_store"] = {"ok": True, "head_position": head}
    except Exception as exc:
        checks["event_store"] = {"ok": False, "error": str(exc)}
    try:
        busy = _probe(runtime)
        projected = runtime.projected_position()
        checks["projections"] = {"ok": True, "position": projected} | busy
    except Exception as exc:
        checks["projections"] = {"ok": False, "error": str(exc)}
    follower = runtime.follower
    if follower is not None:
        alive = runtime.following()
        checks["stream"] = {
            "ok": alive and follower.last_error is None,
            "mode": "embedded",
            "error": follower.last_error,
        }
    else:
        relay = _safe(runtime.relay_position)
        checks["stream"] = {"ok": runtime.stream_reachable(), "mode": "kafka"}
        checks["relay"] = {"ok": relay is not None, "position": relay}
        if relay is not None and head is not None:
            checks["relay_lag"] = head - relay
    lag = head - projected if head is not None and projected is not None else None
    checks["projection_lag"] = lag
    ok = all(v["ok"] for v in checks.values() if isinstance(v, dict))
    return {"ready": ok, "checks": checks}


def _probe(runtime: Runtime) -> dict[str, bool]:
    """`SELECT 1` within HEALTH_SECONDS; a store still busy with figures then is up."""
    try:
        with query_budget(HEALTH_SECONDS):
            runtime.projections.execute("SELECT 1")
    except QueryTimeout:
        return {"busy": True}
    return {}


async def checked(request: Request, runtime: Runtime) -> dict[str, Any]:
    """Readiness from the health threads, within 2 × HEALTH_SECONDS; positions only for a
    request with a valid key."""
    limiter = getattr(request.app.state, "health_threads", None)
    try:
        with anyio.fail_after(2 * HEALTH_SECONDS):
            body = await anyio.to_thread.run_sync(
                partial(readiness, runtime), limiter=limiter, abandon_on_cancel=True
            )
    except TimeoutError:
        late = {"ok": False, "error": f"no answer within {2 * HEALTH_SECONDS:g} s"}
        body = {"ready": False, "checks": {"event_store": late, "projection_lag": None}}
    if not _keyed(request, runtime):
        for check in body["checks"].values():
            if isinstance(check, dict):
                for name in POSITIONS:
                    check.pop(name, None)
    return body


def _keyed(request: Request, runtime: Runtime) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or runtime.keys is None:
        return False
    return runtime.keys.authenticate(token.strip()) is not None


def _safe(read: Any) -> Any:
    try:
        return read()
    except Exception:
        return None


@router.get(
    "/readyz",
    summary="Store, stream and projections reachable; projection lag",
    responses={200: READINESS, 503: READINESS | {"description": "Something is not reachable"}},
)
async def readyz(request: Request) -> JSONResponse:
    body = await checked(request, get_runtime(request))
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/metrics", summary="Prometheus text format", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    body = await checked(request, get_runtime(request))
    checks = body["checks"]
    Gauge("tutorledger_ready", "1 when every dependency is reachable", registry=registry).set(
        1 if body["ready"] else 0
    )
    if "head_position" in checks["event_store"]:
        Gauge("tutorledger_ledger_head_position", "Ledger head", registry=registry).set(
            checks["event_store"]["head_position"]
        )
    if "position" in checks.get("projections", {}):
        Gauge("tutorledger_projected_position", "Projected position", registry=registry).set(
            checks["projections"]["position"]
        )
    if "relay_lag" in checks:
        relay_lag = Gauge("tutorledger_relay_lag_events", "Head - relayed", registry=registry)
        relay_lag.set(checks["relay_lag"])
    if checks["projection_lag"] is not None:
        Gauge(
            "tutorledger_projection_lag_events", "Ledger head - projected", registry=registry
        ).set(checks["projection_lag"])
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
