"""/docs (Swagger UI) and /redoc (ReDoc) served from assets shipped in the package.

FastAPI's own pages load both from a CDN, so they were blank without internet. These pages
load the vendored releases (docs_assets/vendor/*/VENDOR.json says which, from where) and
start Swagger UI from a static script, so their content security policy (DOCS_CSP) allows
the origin only: no inline script or style, no other host.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware

from tutorledger.api.http.security_headers import docs_csp

ASSETS = Path(__file__).resolve().parent / "docs_assets"
PREFIX = "/static/docs"

SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} – Swagger UI</title>
<link rel="icon" type="image/png" href="{prefix}/vendor/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="{prefix}/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{prefix}/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{prefix}/swagger-init.js"></script>
</body>
</html>
"""
REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} – ReDoc</title>
<link rel="icon" type="image/png" href="{prefix}/vendor/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="{prefix}/redoc.css">
</head>
<body>
<div id="redoc" data-spec-url="{openapi_url}"></div>
<script src="{prefix}/vendor/redoc/redoc.standalone.js"></script>
<script src="{prefix}/redoc-init.js" nonce="{nonce}"></script>
</body>
</html>
"""


def _page(template: str, app: FastAPI) -> HTMLResponse:
    """The page, with a fresh nonce its policy allows styles under (ReDoc's own)."""
    nonce = secrets.token_urlsafe(18)
    html = template.format(title=app.title, prefix=PREFIX, openapi_url=app.openapi_url, nonce=nonce)
    return HTMLResponse(html, headers={"Content-Security-Policy": docs_csp(nonce)})


def install_docs(app: FastAPI) -> None:
    """Add /docs, /redoc and their assets (gzipped) to an app built with docs_url=None and
    redoc_url=None."""

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _page(SWAGGER_PAGE, app)

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _page(REDOC_PAGE, app)

    static = GZipMiddleware(StaticFiles(directory=ASSETS), minimum_size=1024)
    app.mount(PREFIX, static, name="docs-static")
