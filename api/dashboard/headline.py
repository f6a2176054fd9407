"""The district page's headline: five figures, each against the period just before the view.

The previous period has the view's length and ends the day before the view's `from`, with
every other filter kept. A view without `from` starts at the district's first request, so
nothing lies before it: its tiles say so rather than compare with an empty period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from tutorledger.api.dashboard.grouped import Period
from tutorledger.api.dashboard.marks import Shown, is_withheld
from tutorledger.api.dashboard.tables import Headline, HeadlineRow
from tutorledger.api.metrics.scope import Scope
from tutorledger.projections.filters import Filters
from tutorledger.projections.reach import Span

EARLIEST = date(1970, 1, 2)  # the first local date the read models' filters accept


def periods(filters: Filters, span: Span | None) -> tuple[Period | None, Period | None]:
    """The view's period (its `from`, else the district's first request; its `to`, else the
    last) and, when the view has a `from`, the period of equal length just before it."""
    start = filters.date_from or (span.first if span else None)
    end = filters.date_to or (span.last if span else start)
    if start is None or end is None:
        return None, None
    current = Period("current", start, max(start, end))
    if filters.date_from is None:
        return current, None
    before = start - timedelta(days=1)
    first = max(before - timedelta(days=current.days - 1), EARLIEST)
    return current, (Period("previous", first, before) if before >= first else None)


@dataclass(frozen=True)
class Tile:
    """One headline figure as the page shows it (withheld figures marked)."""

    key: str
    label: str
    definition: str
    metric: str  # API metric.field it is read from
    kind: str  # "count" | "rate" | "minutes"
    value: Any
    previous: Any  # None: no previous period
    of_label: str | None = None  # "of 52,149 enrolled"
    of_value: Any = None

    @property
    def change(self) -> float | None:
        if not _number(self.value) or not _number(self.previous):
            return None
        return float(self.value) - float(self.previous)

    @property
    def relative(self) -> float | None:
        change = self.change
        return change / float(self.previous) if change is not None and self.previous else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _get(shown: Shown | None, *path: str | int) -> Any:
    """A figure of an answer's view by path (None when the answer or the row is missing)."""
    node: Any = None if shown is None else shown.view
    for step in path:
        if isinstance(node, dict) and isinstance(step, str):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return None
    return node


DEFINITIONS = {
    "reached": "Students reached: distinct students who requested at least one session in "
    "the view.",
    "sessions": "Sessions completed: sessions requested in the view that a tutor completed.",
    "minutes": "Minutes tutored: the length of every completed session (tutor matched to "
    "session completed), added up.",
    "regular": "Students in regular use: students who requested sessions in at least 3 "
    "distinct weeks of the view.",
    "helped": "Helped rate: of the post-session surveys answered, the share that said the "
    "session helped.",
}


def tiles(now: dict[str, Shown], before: dict[str, Shown] | None, cohort: bool) -> list[Tile]:
    """The five headline tiles from the view's answers and the previous period's."""

    def pair(name: str, *path: str | int) -> tuple[Any, Any]:
        previous = _get(before[name], *path) if before is not None else None
        return _get(now[name], *path), previous

    base_label = "cohort members" if cohort else "enrolled"
    base = _get(now["participation"], "cohort_size" if cohort else "enrolled")
    specs = [
        ("reached", "Students reached", "participation.students_served", "count",
         pair("participation", "students_served"), f"of {{}} {base_label}", base),
        ("sessions", "Sessions completed", "participation.sessions_completed", "count",
         pair("participation", "sessions_completed"), "of {} requested",
         _get(now["participation"], "sessions_requested")),
        ("minutes", "Minutes tutored", "dosage.minutes", "minutes",
         pair("dosage", "minutes"), None, None),
        ("regular", "Students in regular use", "engagement.regular_students", "count",
         pair("engagement", "regular_students"), "of {} reached",
         _get(now["engagement"], "students")),
        ("helped", "Helped rate", "satisfaction.helped_rate", "rate",
         pair("satisfaction", "rows", 0, "helped_rate"), "of {} surveys",
         _get(now["satisfaction"], "rows", 0, "surveys")),
    ]  # fmt: skip
    return [
        Tile(key, label, DEFINITIONS[key], metric, kind, values[0],
             values[1] if before is not None else None, of_label, of_value)
        for key, label, metric, kind, values, of_label, of_value in specs
    ]  # fmt: skip


def _plain(value: Any) -> float | None:
    return None if value is None or is_withheld(value) else float(value)


def headline_table(
    scope: Scope, tiles_: list[Tile], current: Period | None, previous: Period | None
) -> Headline:
    """The tiles as a CSV table (withheld figures empty, as the API gives them)."""
    rows = []
    for t in tiles_:
        change = t.change
        rows.append(
            HeadlineRow(
                figure=t.label,
                metric=t.metric,
                value=_plain(t.value),
                previous=_plain(t.previous),
                change=change,
                relative_change=t.relative,
                period_from=current.start if current else None,
                period_to=current.end if current else None,
                previous_from=previous.start if previous else None,
                previous_to=previous.end if previous else None,
            )
        )
    return Headline(**scope.envelope(), rows=rows)
