"""Parameter constraints stated in the OpenAPI, so a client can tell a valid request in advance.

Dates must fit ClickHouse's `Date` (1970-01-01 … 2105-12-31): the range is written as a
pattern beside `format: date`, and checked again after parsing. A range's length is bounded
too (`check_span`, the `max_range_days` setting), so its cost is known before it runs.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from tutorledger.domain.errors import RangeTooLong
from tutorledger.projections.groups import group_by_choices

DATE_MIN, DATE_MAX = date(1970, 1, 1), date(2105, 12, 31)
DATE_PATTERN = r"^(19[7-9][0-9]|20[0-9]{2}|210[0-5])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
GROUP_BY_PATTERN = f"^({'|'.join(group_by_choices())})$"


def date_text(value: Any) -> Any:
    """Only `YYYY-MM-DD` text is a date here: pydantic would read a number, or numeric text
    such as "0", as seconds since 1970."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("a date must be given as YYYY-MM-DD")
    return value


def whole_number(value: Any) -> Any:
    """JSON Schema's integer: 3 or 3.0, never true or "3"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


def in_date_range(value: date | None) -> date | None:
    if value is not None and not DATE_MIN <= value <= DATE_MAX:
        raise ValueError(f"date must be between {DATE_MIN} and {DATE_MAX}")
    return value


def query_date(alias: str, description: str) -> Any:
    """A `from`/`to`-style query parameter (use with `BoundedDate | None`)."""
    return Query(alias=alias, description=f"{description} ({DATE_MIN} … {DATE_MAX})")


BoundedDate = Annotated[
    date,
    BeforeValidator(date_text),
    AfterValidator(in_date_range),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]


def check_span(date_from: date | None, date_to: date | None, today: date, max_days: int) -> None:
    """Refuse a range longer than `max_days` before anything runs: weekly rows, the reach
    trend and their queries grow with it. A side left open is measured to or from `today`
    (what lies beyond the data costs nothing; what a request adds beyond today would), so
    `from=1970-01-01` alone is as long as `from=1970-01-01&to=<today>`."""
    if date_from is None and date_to is None:
        return
    low = date_from if date_from is not None else min(date_to or today, today)
    high = date_to if date_to is not None else max(date_from or today, today)
    span = (high - low).days + 1
    if span > max_days:
        raise RangeTooLong(
            f"the date range spans {span} days; at most {max_days} are answered",
            {"from": str(date_from), "to": str(date_to), "days": span, "max_days": max_days},
        )


def whole_weeks(date_from: date | None, date_to: date | None) -> tuple[date | None, date | None]:
    """The range widened to whole ISO weeks: `from` back to its Monday, `to` on to its Sunday
    (clamped to the dates ClickHouse holds)."""
    start = date_from - timedelta(days=date_from.weekday()) if date_from else None
    end = date_to + timedelta(days=6 - date_to.weekday()) if date_to else None
    return (max(start, DATE_MIN) if start else None, min(end, DATE_MAX) if end else None)
