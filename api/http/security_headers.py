"""Security headers on every response, JSON and HTML alike (a route may set its own first).

JSON answers may carry student records: never cached, never framed, never sniffed as HTML.
HTML pages get a policy that allows scripts and styles from the origin and nothing else; the
API docs (/docs, /redoc: vendored assets, no inline code) set the stricter DOCS_CSP.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Cache-Control": "no-store",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
HTML_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

# The two <style> elements the vendored ReDoc bundle writes while it loads, before it can be
# handed the page's nonce: empty, then its scrollbar CSS (hashes of that release's text; the
# browser test fails on any style the policy refuses).
REDOC_LOAD_STYLES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
)


def docs_csp(nonce: str) -> str:
    """The API docs' policy: the origin only, no inline script, no 'unsafe-inline' style.
    ReDoc's <style> elements carry the page's nonce; `data:` images are the icons inside
    Swagger UI's stylesheet (never a request); `blob:` workers are ReDoc's search index,
    built in the page from its own bundle."""
    styles = " ".join(REDOC_LOAD_STYLES)
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}' {styles}; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


class SecurityHeaders:
    """Adds COMMON and a content security policy to each response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON.items():
                    headers.setdefault(name, value)
                html = headers.get("content-type", "").startswith("text/html")
                headers.setdefault("Content-Security-Policy", HTML_CSP if html else API_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)
