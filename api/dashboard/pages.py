"""Rendering helpers: the view's query (filters kept in the URL), templates, number formats."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tutorledger.api.dashboard.marks import MARK, is_withheld
from tutorledger.api.dashboard.session import Signer
from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.domain.errors import InvalidRequest, TutorLedgerError

HERE = Path(__file__).parent
ID_PATTERN = DISTRICT_PATTERN
SUBJECT_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
# The pages load only our own files: no inline script or style, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class ViewQuery(BaseModel):
    """The filters every metric takes, read from the page URL (blank form fields = unset)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    school_id: str | None = Field(default=None, pattern=ID_PATTERN)
    subject: str | None = Field(default=None, pattern=SUBJECT_PATTERN)
    grade: int | None = Field(default=None, ge=0, le=12)
    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")
    as_of_position: int | None = Field(default=None, ge=0)
    cohort_id: str | None = Field(default=None, pattern=ID_PATTERN)
    provider: str | None = Field(default=None, pattern=ID_PATTERN)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v not in ("", None)}
        return data

    def params(self, **changes: Any) -> dict[str, str]:
        """URL parameters of this view with some replaced (None drops one)."""
        values = self.model_dump(by_alias=True) | changes
        return {k: str(v) for k, v in values.items() if v is not None}

    def query(self, **changes: Any) -> str:
        params = self.params(**changes)
        return "?" + urlencode(params) if params else ""


def parse_view(request: Request) -> ViewQuery:
    try:
        return ViewQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        details = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        raise InvalidRequest("a filter in the address is not valid", details) from None


def pct(value: Any) -> str:
    if is_withheld(value):
        return MARK
    return "—" if value is None else f"{value * 100:.1f}%"


def num(value: Any) -> str:
    """Counts as whole numbers, other figures to two decimals."""
    if is_withheld(value):
        return MARK
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def minutes(value: Any) -> str:
    """Minutes as people read them: 138,176.4 → '138,176 min'; under ten, one decimal."""
    if is_withheld(value):
        return MARK
    if value is None:
        return "—"
    return f"{value:,.1f} min" if abs(value) < 10 else f"{round(value):,} min"


def signed(value: Any, kind: str = "count", bound: bool = False) -> str:
    """A change: '+1,234', '−56', '+2.1 pts' (rates change in percentage points); one that
    rounds to zero is '±0.0 pts', never '−0.0 pts'. A `bound` of a range ('−5.6 to 0.0 pts')
    that rounds to zero is plain '0.0': '±' there reads as a range of its own."""
    if value is None or is_withheld(value):
        return "—"
    size = abs(value)
    if kind == "rate":
        text = f"{size * 100:.1f} pts"
    elif kind == "minutes":
        text = f"{round(size):,} min"
    else:
        text = f"{round(size):,}"
    if not any(c in "123456789" for c in text):  # rounds to zero: no direction to show
        return text if bound else f"±{text}"
    return f"{'+' if value > 0 else '−'}{text}"


def pts_range(low: Any, high: Any) -> str:
    """A range of rate changes: '−5.6 to 0.0 pts', '+1.1 to +2.2 pts' (units once)."""
    start = signed(low, "rate", bound=True).removesuffix(" pts")
    return f"{start} to {signed(high, 'rate', bound=True)}"


def secs(value: Any) -> str:
    """Durations as people read them: 95 s → '1 min 35 s'."""
    if is_withheld(value):
        return MARK
    if value is None:
        return "—"
    whole = round(value)
    minutes, seconds = divmod(whole, 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def grade_name(grade: int | None) -> str:
    return "All grades" if grade is None else "K" if grade == 0 else f"Grade {grade}"


GZIP_FROM = 4096  # bytes: smaller pages are not worth the work


def compressed(request: Request, response: HTMLResponse) -> HTMLResponse:
    """The page gzipped when the browser takes it (a district page is mostly repeated table
    markup: ~10x smaller). Safe from BREACH-style guessing: a page holds no secret (the
    session is a cookie, forms carry no token) beside the filters the reader chose."""
    body = bytes(response.body)
    if len(body) < GZIP_FROM or "gzip" not in request.headers.get("accept-encoding", ""):
        return response
    out = HTMLResponse(gzip.compress(body, compresslevel=6), status_code=response.status_code)
    kept = {k: v for k, v in response.headers.items() if k not in ("content-length", "vary")}
    out.headers.update({**kept, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return out


@dataclass(frozen=True)
class Pages:
    """What the dashboard routes share: the session signer and the templates."""

    signer: Signer
    templates: Jinja2Templates

    @classmethod
    def build(cls, signer: Signer) -> Pages:
        templates = Jinja2Templates(directory=str(HERE / "templates"))
        templates.env.trim_blocks = templates.env.lstrip_blocks = True
        templates.env.filters.update(
            pct=pct,
            num=num,
            secs=secs,
            minutes=minutes,
            signed=signed,
            grade_name=grade_name,
            pts_range=pts_range,
        )
        templates.env.tests["withheld"] = is_withheld
        templates.env.globals["MARK"] = MARK
        return cls(signer, templates)

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(SECURITY_HEADERS)
        return compressed(request, response)

    def error(self, request: Request, exc: TutorLedgerError, **context: Any) -> HTMLResponse:
        """A page naming the machine code and message; it carries no figure."""
        body = {"code": exc.code, "message": exc.message, "details": exc.details, **context}
        return self.render(request, "error.html", body, status=exc.status)


def state(request: Request) -> Pages:
    pages: Pages = request.app.state.dashboard
    return pages
