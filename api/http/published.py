"""What keys that see suppressed figures may ask: published positions, whole weeks, and
answers checked against their neighbours (docs/privacy.md, "Suppression and differencing").

Two answers a dashboard key can ask that differ by one student's event would reveal it by
subtraction, whatever each withholds. So for such keys (every role but auditor and admin):

- **Published positions.** `as_of_position` is rounded down to the highest published one
  (api/http/publication.py: the end of a run of one local day's events, in ledger order).
  Two positions inside one run give one answer.
- **Whole weeks.** `from` moves back to its Monday, `to` on to its Sunday. An open side
  stays open (the answer covers every request); its neighbour is taken on the whole weeks
  the district's requests cover.
- **Neighbours.** Each answer is computed also at the previous published position, with `to`
  a week earlier and with `from` a week later: the answers one step away on each axis. A
  cell that differs from a neighbour by 1 … threshold − 1 is withheld with everything derived
  from it (api/metrics/suppression.py), so no two adjacent answers differ by a small count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from tutorledger.api.metrics.registry import Metric
from tutorledger.api.metrics.scope import Scope
from tutorledger.api.metrics.suppression import Protected, suppress_metric
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.groups import GROUPS

WEEK = timedelta(days=7)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class PublishedScope(Scope):
    """A dashboard key's scope: published position, whole weeks, neighbours checked."""

    store: ProjectionStore | None = None
    previous_position: int | None = None  # the published position before this one
    span: tuple[date, date] | None = None  # whole weeks the requests cover (for open sides)
    asked: dict[str, Any] | None = None  # what the request named (asked_from …), echoed too

    def envelope(self) -> dict[str, Any]:
        body = super().envelope()
        body["filters"].update(self.asked or {})
        return body

    def neighbours(self) -> list[Scope]:
        """The answers one step away: previous published position, `to` a week earlier,
        `from` a week later (none past the range's other end)."""
        f = self.filters
        found: list[Scope] = []
        if self.previous_position is not None:
            found.append(_plain(self, replace(f, as_of_position=self.previous_position)))
        first, last = self.span or (f.date_from, f.date_to)
        start, end = f.date_from or first, f.date_to or last
        if start is not None and end is not None and end - WEEK >= start:
            found.append(_plain(self, replace(f, date_to=end - WEEK)))
            found.append(_plain(self, replace(f, date_from=start + WEEK)))
        return found

    def protect(self, model: M, metric: Protected) -> M:
        near: list[BaseModel] = []
        if isinstance(metric, Metric) and metric.filters and metric.options is None and self.store:
            keys = tuple(GROUPS[g] for g in getattr(model, "group_by", None) or ())
            near = [metric.compute(self.store, n, keys) for n in self.neighbours()]
        threshold = self.profile.suppression_threshold
        return suppress_metric(metric, model, self.role, threshold, neighbours=near)


def _plain(scope: Scope, filters: Any) -> Scope:
    return Scope(filters, scope.head_hash, scope.profile, scope.csv, scope.role)
