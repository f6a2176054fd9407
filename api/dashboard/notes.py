"""Sentences that keep a page's figures from being misread: dates the page widened, a
previous period that starts before the data, and why a rate is withheld.

Each is worded from what the page already shows (the answer envelope, the shown figures, the
published rules), never from the exact figures behind a withheld one: a note must not tell a
reader more about a withheld count than its mark does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from tutorledger.api.dashboard.grouped import Period
from tutorledger.api.dashboard.marks import WITHHELD, is_withheld
from tutorledger.api.metrics.scope import Scope


@dataclass(frozen=True)
class Widened:
    """The dates a dashboard key asked for, and the whole weeks it is answered for."""

    asked_from: date | None
    asked_to: date | None
    start: date | None
    end: date | None

    @property
    def asked(self) -> str:
        """What was asked, as the form had it: '2026-11-30 – 2027-03-05', 'from …', 'to …'."""
        if self.asked_from and self.asked_to:
            return f"{self.asked_from} – {self.asked_to}"
        return f"from {self.asked_from}" if self.asked_from else f"to {self.asked_to}"


def _day(value: Any) -> date | None:
    return date.fromisoformat(str(value)) if value else None


def widened(scope: Scope) -> Widened | None:
    """The asked dates when the page answers wider ones (a dashboard key's range moves out to
    whole Monday–Sunday weeks, api/http/published.py); None when it answers what was asked
    (exact roles, no dates, or dates already on week bounds)."""
    echoed = scope.envelope()["filters"]
    if "asked_from" not in echoed:
        return None
    asked_from, asked_to = _day(echoed.get("asked_from")), _day(echoed.get("asked_to"))
    start, end = scope.filters.date_from, scope.filters.date_to
    if (asked_from, asked_to) == (start, end):
        return None
    return Widened(asked_from, asked_to, start, end)


@dataclass(frozen=True)
class Partial:
    """A previous period that starts before the district's first request."""

    first_request: date
    days_with_data: int  # days of the previous period from the first request on (0: none)
    days: int  # the previous period's length (the view's)


def partial_previous(previous: Period | None, first_request: date | None) -> Partial | None:
    """How much of the previous period could hold data, when part of it cannot: a change then
    compares the view with a shorter span (figures unchanged; the page says so)."""
    if previous is None or first_request is None or previous.start >= first_request:
        return None
    with_data = max((previous.end - first_request).days + 1, 0)
    return Partial(first_request, with_data, previous.days)


SURVEY_RATES = ("helped_rate", "mean_rating", "survey_rate")


def with_rates_withheld(row: dict[str, Any]) -> dict[str, Any]:
    """A survey row whose count is withheld with its rates marked withheld too, even a rate
    of nothing: '—' (no surveys) beside a withheld count would tell that it is a zero
    withheld next to a small count."""
    if not is_withheld(row.get("surveys")):
        return row
    return row | {k: WITHHELD for k in SURVEY_RATES if k in row and row[k] is None}


def rate_withheld(row: dict[str, Any] | None, threshold: int) -> str | None:
    """Why a shown survey row's helped rate is withheld, from what the row shows: the survey
    count withheld, or shown (then the count saying it helped is the withheld one). Which rule
    withheld a count (small itself, or closing a line) is not told: that would single out
    the small cells among the withheld ones."""
    if row is None or not is_withheld(row.get("helped_rate")):
        return None
    rule = (
        f"fewer than {threshold}, or a count that would let a small one be worked out from "
        "another figure or from the previous published day's"
    )
    if is_withheld(row.get("surveys")):
        return f"withheld: the number of surveys it is computed from is withheld ({rule})"
    return (
        "withheld: how many of these surveys said the session helped is withheld (those "
        f"saying it helped, or those saying it did not: {rule})"
    )
