"""Bounded figure work: how many figure requests run at once, per key and in all, and how
long their queries may take.

Figure requests (metrics, alerts, cohorts, dashboard pages and CSVs) are sync routes: each
holds one of the worker threads FastAPI shares among sync routes (anyio's default: 40) for as
long as its queries run. Unbounded, a few dozen slow ones took every thread, and every other
route, health checks included, queued behind them. So, before any thread is taken:

- a key (Bearer, or the key a dashboard cookie was signed for) with `figure_requests_per_key`
  requests running gets 429 `too_many_requests`;
- with `figure_requests` running in all (below the thread limit), 503 `server_busy`;
- an admitted request's queries share `figure_seconds` of ClickHouse time (each runs with
  `max_execution_time` = what is left), else 503 `query_timeout`.

Every 429 and 503 on these paths says when to retry (`Retry-After`). A pure ASGI middleware:
admission is decided on the event loop, where the counters need no lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tutorledger.api.dashboard.session import COOKIE
from tutorledger.api.http.errors import error_response
from tutorledger.domain.errors import ServerBusy, TooManyRequests, TutorLedgerError
from tutorledger.infra.clickhouse import query_budget
from tutorledger.infra.keys import key_digest
from tutorledger.infra.outages import RETRY_AFTER_SECONDS

FIGURE_PATHS = (
    "/v1/metrics",
    "/v1/alerts",
    "/v1/cohorts",
    "/dashboard",
    "/v1/audit/tutor-overlap",
)


@dataclass
class Slots:
    """Figure requests running now: per key digest, and in all."""

    per_key: int
    total: int
    running: dict[str, int] = field(default_factory=dict)
    in_all: int = 0

    def refusal(self, who: str | None) -> TutorLedgerError | None:
        """Why a request from `who` may not start now (None: it may)."""
        if who is not None and self.running.get(who, 0) >= self.per_key:
            return TooManyRequests(
                f"this key already has {self.per_key} figure requests running; retry shortly",
                {"limit": self.per_key},
            )
        if self.in_all >= self.total:
            return ServerBusy("the server is answering as many figure requests as it may")
        return None

    def take(self, who: str | None) -> None:
        self.in_all += 1
        if who is not None:
            self.running[who] = self.running.get(who, 0) + 1

    def give_back(self, who: str | None) -> None:
        self.in_all -= 1
        if who is not None:
            left = self.running[who] - 1
            if left:
                self.running[who] = left
            else:
                del self.running[who]  # no entry per key ever seen: memory stays bounded


def caller(scope: Scope) -> str | None:
    """The key digest a request is made with (Bearer, or its dashboard session), unverified:
    the route still authenticates; this only decides whose slots it counts against."""
    conn = HTTPConnection(scope)
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return key_digest(token.strip())
    cookie = conn.cookies.get(COOKIE)
    pages = getattr(conn.app.state, "dashboard", None) if "app" in scope else None
    session = pages.signer.session(cookie) if cookie and pages is not None else None
    return session.digest if session is not None else None


class FigureLimiter:
    """Admits figure requests within the slots and gives each its query budget."""

    def __init__(self, app: ASGIApp, per_key: int, total: int, seconds: float) -> None:
        self.app = app
        self.slots = Slots(per_key, total)
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(FIGURE_PATHS):
            await self.app(scope, receive, send)
            return
        who = caller(scope)
        refused = self.slots.refusal(who)
        if refused is not None:
            retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            answer = error_response(refused.status, refused.code, refused.message,
                                    refused.details, headers=retry)  # fmt: skip
            await answer(scope, receive, send)
            return
        self.slots.take(who)
        try:
            with query_budget(self.seconds):
                await self.app(scope, receive, _retry_after(send))
        finally:
            self.slots.give_back(who)


def _retry_after(send: Send) -> Send:
    """`send`, adding Retry-After to a 429 or 503 that lacks it (a dashboard error page)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] in (429, 503):
            headers = MutableHeaders(scope=message)
            headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
        await send(message)

    return sending
