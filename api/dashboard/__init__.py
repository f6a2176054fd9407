"""The district dashboard: HTML pages over the metrics builders, with every asset packaged."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware

from tutorledger.api.dashboard import cohort_admin, cohort_views, equity_views
from tutorledger.api.dashboard.pages import HERE, Pages
from tutorledger.api.dashboard.routes import router
from tutorledger.api.dashboard.session import Signer
from tutorledger.infra.settings import Settings

STATIC_PREFIX = "/static/dashboard"


def install(app: FastAPI, settings: Settings) -> None:
    """Add the pages and their static files (served from the package, gzipped) to the app."""
    app.state.dashboard = Pages.build(Signer.from_settings(settings))
    app.include_router(router)
    app.include_router(cohort_views.router)
    app.include_router(equity_views.router)
    app.include_router(cohort_admin.router)
    static = GZipMiddleware(StaticFiles(directory=HERE / "static"), minimum_size=1024)
    app.mount(STATIC_PREFIX, static, name="dashboard-static")
