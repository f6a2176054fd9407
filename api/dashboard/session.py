"""Dashboard sign-in: a server-signed, HttpOnly, SameSite=Strict cookie naming the key's sha256.

The key itself never reaches a URL, the browser's storage or the cookie: the cookie holds
only the key's digest, signed with the server's secret and dated, and every request looks the
digest up in the key store again, so a key removed from the keys file stops working.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from tutorledger.domain.errors import Forbidden, Unauthorized
from tutorledger.infra.keys import KeyStore, Principal, key_digest
from tutorledger.infra.settings import Settings

COOKIE = "tutorledger_session"
MAX_AGE_SECONDS = 8 * 3600  # one working day; then sign in again
_SALT = "tutorledger.dashboard.session"


@dataclass(frozen=True)
class Signer:
    """Signs and checks session cookies with one secret (per process unless configured)."""

    serializer: URLSafeTimedSerializer
    max_age: int = MAX_AGE_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        secret = settings.session_secret
        value = secret.get_secret_value() if secret is not None else secrets.token_urlsafe(32)
        return cls(URLSafeTimedSerializer(value, salt=_SALT))

    def issue(self, digest: str) -> str:
        return self.serializer.dumps({"k": digest})

    def digest(self, token: str) -> str | None:
        """The key digest a cookie names, or None when it is forged, garbled or too old."""
        try:
            data = self.serializer.loads(token, max_age=self.max_age)
        except BadSignature:
            return None
        value = data.get("k") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None


def sign_in(keys: KeyStore | None, key: str) -> tuple[str, Principal]:
    """Check a submitted key: it must be known and allowed to read figures."""
    key = key.strip()
    principal = keys.authenticate(key) if keys is not None and key else None
    if principal is None:
        raise Unauthorized("unknown API key")
    if not principal.can("read_metrics"):
        raise Forbidden(f"role '{principal.role}' may not read figures")
    return key_digest(key), principal


def principal_of(request: Request, signer: Signer, keys: KeyStore | None) -> Principal | None:
    """The signed-in caller, or None (no cookie, a bad one, or a key no longer known)."""
    token = request.cookies.get(COOKIE)
    digest = signer.digest(token) if token else None
    if digest is None or keys is None:
        return None
    principal = keys.by_digest(digest)
    if principal is None or not principal.can("read_metrics"):
        return None
    return principal


def set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def same_origin(request: Request) -> bool:
    """A form post from our own pages (browsers send Origin on POST); blocks login CSRF."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a dashboard path on this site (no open redirect)."""
    if target and target.startswith("/dashboard/") and "//" not in target and "\\" not in target:
        return target
    return "/"
