"""What keys that see suppressed figures may ask: published positions, whole weeks, and
answers checked against their neighbours (docs/privacy.md, "Suppression and differencing").

Two answers a dashboard key can ask that differ by one student's event would reveal it by
subtraction, whatever each withholds. So for such keys (every role but auditor and admin):

- **Published positions.** `as_of_position` is rounded down to the highest published one
  (api/http/publication.py: the end of a run of one local day's events, in ledger order).
  Two positions inside one run give one answer.
- **Whole weeks.** `from` moves back to its Monday, `to` on to its Sunday (an open side
  stays open): a week is the finest step between two date ranges such a key can ask.
- **The previous position.** Each answer is computed also at the previous published
  position; a cell that differs from it by 1 … threshold − 1 is withheld with everything
  derived from it (api/metrics/suppression.py), so two consecutive published answers never
  differ by a small count. Grouped dashboard tables compute that neighbour for all their
  rows in one grouped query and hand it in; every other answer computes it here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import BaseModel

from tutorledger.api.metrics.registry import Metric
from tutorledger.api.metrics.scope import Scope
from tutorledger.api.metrics.suppression import Protected, suppress_metric
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.groups import GROUPS

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class PublishedScope(Scope):
    """A dashboard key's scope: published position, whole weeks, the previous one checked."""

    store: ProjectionStore | None = None
    previous_position: int | None = None  # the published position before this one
    asked: dict[str, Any] | None = None  # what the request named (asked_from …), echoed too

    def envelope(self) -> dict[str, Any]:
        body = super().envelope()
        body["filters"].update(self.asked or {})
        return body

    def previous(self) -> Scope | None:
        """The same answer one published position earlier (None at the first one)."""
        if self.previous_position is None:
            return None
        return _plain(self, replace(self.filters, as_of_position=self.previous_position))

    def protect(
        self, model: M, metric: Protected, neighbours: Sequence[BaseModel] | None = None
    ) -> M:
        """Suppression with the answer at the previous published position as neighbour:
        computed here unless the caller (a grouped dashboard table) computed it already."""
        if neighbours is None:
            neighbours = []
            earlier = self.previous()
            if (
                isinstance(metric, Metric)
                and metric.filters
                and metric.options is None
                and earlier is not None
                and self.store is not None
            ):
                keys = tuple(GROUPS[g] for g in getattr(model, "group_by", None) or ())
                neighbours = [metric.compute(self.store, earlier, keys)]
        threshold = self.profile.suppression_threshold
        return suppress_metric(metric, model, self.role, threshold, neighbours=neighbours)


def _plain(scope: Scope, filters: Any) -> Scope:
    return Scope(filters, scope.head_hash, scope.profile, scope.csv, scope.role)
