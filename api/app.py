"""FastAPI app factory: nothing runs at import; adapters live on app.state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from tutorledger.api import dashboard
from tutorledger.api.http.body_guard import BodyGuard
from tutorledger.api.http.docs_pages import install_docs
from tutorledger.api.http.errors import install_error_handlers
from tutorledger.api.http.openapi import install_openapi
from tutorledger.api.http.routes import (
    admin,
    alerts,
    audit,
    cohorts,
    events,
    health,
    metrics,
    overlap,
    privacy,
    roster,
    schools,
    sessions,
    standard,
)
from tutorledger.api.http.routes.health import HEALTH_THREADS
from tutorledger.api.http.security_headers import SecurityHeaders
from tutorledger.api.limiter import FigureLimiter
from tutorledger.api.runtime import Runtime
from tutorledger.infra.keys import KeyStore
from tutorledger.infra.settings import Settings

DESCRIPTION = """
The system of record for district tutoring programs: session lifecycle events are
validated and appended to a tamper-evident ledger, projected into ClickHouse, and
served as figures any auditor can reproduce at an earlier ledger position.

Auth: `Authorization: Bearer <key>`; roles `emitter`, `dashboard`, `auditor`, `admin`,
each limited to the districts on the key. Errors: `{"error": {"code", "message", "details"}}`.
Rates and shares are fractions 0–1; durations are seconds.
"""


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the API; with no runtime given, one is built from settings at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime
        if rt is None:
            keys = KeyStore.from_file(settings.api_keys_file) if settings.api_keys_file else None
            rt = Runtime.build(settings, keys)
        app.state.runtime = rt
        app.state.health_threads = anyio.CapacityLimiter(HEALTH_THREADS)
        rt.start()
        try:
            yield
        finally:
            if runtime is None:
                rt.stop()

    app = FastAPI(
        title="tutorledger",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from vendored assets, not a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    modules = (events, sessions, schools, metrics, alerts, audit, admin, privacy, roster, health)
    for module in (*modules, cohorts, standard, overlap):
        app.include_router(module.router)
    dashboard.install(app, settings)
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        FigureLimiter,
        per_key=settings.figure_requests_per_key,
        total=settings.figure_requests,
        seconds=settings.figure_seconds,
    )
    app.add_middleware(SecurityHeaders)  # added last: outermost, so every answer gets them
    install_openapi(app)
    install_docs(app)
    return app
