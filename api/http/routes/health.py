"""Liveness, readiness with lag, and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, Field

from tutorledger.api.http.deps import RuntimeDep
from tutorledger.api.runtime import Runtime

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Any] = Field(
        description="event_store, projections, stream (and relay in Kafka mode), each with "
        "`ok`; `projection_lag` (and `relay_lag`): ledger events not yet in the figures"
    )


READINESS = {"model": Readiness}


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
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
        runtime.projections.execute("SELECT 1")
        projected = runtime.projected_position()
        checks["projections"] = {"ok": True, "position": projected}
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
def readyz(runtime: RuntimeDep) -> JSONResponse:
    body = readiness(runtime)
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/metrics", summary="Prometheus text format", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    registry = CollectorRegistry()
    body = readiness(runtime)
    checks = body["checks"]
    Gauge("tutorledger_ready", "1 when every dependency is reachable", registry=registry).set(
        1 if body["ready"] else 0
    )
    if checks["event_store"].get("ok"):
        Gauge("tutorledger_ledger_head_position", "Ledger head", registry=registry).set(
            checks["event_store"]["head_position"]
        )
    if checks["projections"].get("ok"):
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
