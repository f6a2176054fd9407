"""One metrics request, resolved: the filters at one ledger position and who is asking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from tutorledger.api.metrics.suppression import Protected, suppress_metric
from tutorledger.domain.district import DistrictProfile
from tutorledger.projections.filters import Filters

M = TypeVar("M", bound=BaseModel)


def echo(filters: Filters) -> dict[str, Any]:
    return {
        "school_id": filters.school_id,
        "subject": filters.subject,
        "grade": filters.grade,
        "from": filters.date_from.isoformat() if filters.date_from else None,
        "to": filters.date_to.isoformat() if filters.date_to else None,
        "time_zone": filters.tz,
        "cohort_id": filters.cohort_id,
        "group": filters.group,
        "provider": filters.provider,
    }


@dataclass(frozen=True)
class Scope:
    """Filters at a position, the district's calendar, the output format and the caller's role."""

    filters: Filters
    head_hash: str | None
    profile: DistrictProfile
    csv: bool
    role: str = "dashboard"  # whose figures: dashboards get small cells withheld

    def envelope(self) -> dict[str, Any]:
        return {
            "district_id": self.filters.district_id,
            "as_of_position": self.filters.as_of_position,
            "head_hash": self.head_hash,
            "filters": echo(self.filters),
        }

    def previous(self) -> Scope | None:
        """The scope one published position earlier, whose answer each answer is checked
        against (api/http/published.py); None: this caller's answers are not checked."""
        return None

    def protect(
        self, model: M, metric: Protected, neighbours: Sequence[BaseModel] | None = None
    ) -> M:
        """The figures this caller may see (small-cell suppression for dashboard keys);
        `neighbours`: the same answer at `previous()`, when the caller computed it already."""
        threshold = self.profile.suppression_threshold
        return suppress_metric(metric, model, self.role, threshold, neighbours or ())
