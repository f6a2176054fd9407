"""Dashboard sign-in: a server-signed, HttpOnly, SameSite=Strict cookie naming the key's sha256.

The key itself never reaches a URL, the browser's storage or the cookie: the cookie holds
only the key's digest and a random session id, signed with the server's secret and dated.
Every request looks the digest up in the key store again (which follows the keys file), so a
removed or revoked key stops working within seconds; and every request asks whether the
session id was signed out, so a cookie replayed after sign-out is refused. Sign-outs are kept
in the event store's database (infra/eventstore/signouts.py), which every API process reads.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
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
        """A new session for the key: its digest and a fresh random session id."""
        return self.serializer.dumps({"k": digest, "s": secrets.token_urlsafe(18)})

    def session(self, token: str) -> Session | None:
        """The session a cookie holds, or None when it is forged, garbled or too old."""
        try:
            data, signed_at = self.serializer.loads(
                token, max_age=self.max_age, return_timestamp=True
            )
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        digest, session_id = data.get("k"), data.get("s")
        if not isinstance(digest, str) or not isinstance(session_id, str) or not session_id:
            return None  # a cookie from before sessions had ids: sign in again
        return Session(digest, session_id, signed_at + timedelta(seconds=self.max_age))


@dataclass(frozen=True)
class Session:
    """What a valid cookie says: whose key, which session, and when it lapses anyway."""

    digest: str
    session_id: str
    expires_at: datetime


def sign_in(keys: KeyStore | None, key: str) -> tuple[str, Principal]:
    """Check a submitted key: it must be known and allowed to read figures."""
    key = key.strip()
    principal = keys.authenticate(key) if keys is not None and key else None
    if principal is None:
        raise Unauthorized("unknown API key")
    if not principal.can("read_metrics"):
        raise Forbidden(f"role '{principal.role}' may not read figures")
    return key_digest(key), principal


def principal_of(
    request: Request, signer: Signer, keys: KeyStore | None, signed_out: Callable[[str], bool]
) -> Principal | None:
    """The signed-in caller, or None (no cookie, a bad one, a key no longer known, or a
    session signed out). `signed_out` is asked last: only a cookie otherwise good costs a
    look-up in the sign-out table."""
    token = request.cookies.get(COOKIE)
    session = signer.session(token) if token else None
    if session is None or keys is None:
        return None
    principal = keys.by_digest(session.digest)
    if principal is None or not principal.can("read_metrics"):
        return None
    if signed_out(session.session_id):
        return None
    return principal


def current_session(request: Request, signer: Signer) -> Session | None:
    """The session the request's cookie holds (for sign-out), valid signature only."""
    token = request.cookies.get(COOKIE)
    return signer.session(token) if token else None


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
