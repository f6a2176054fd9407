"""Heat-map grids laid out from metric rows: demand (school × subject) and timing (day × hour).

Colour is never the only signal: every cell shows its number, hotspots carry a text marker,
and the colour classes (dashboard.css) come from colour-blind-safe ColorBrewer schemes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A school × subject cell is a hotspot when its lift is at least this and it holds enough
# requests that the lift is not the noise of a handful of sessions.
HOTSPOT_LIFT = 2.0
HOTSPOT_MIN_REQUESTS = 20
# Lift bands: below the first edge is band 0; diverging around 1 (no difference).
LIFT_EDGES = (0.5, 0.8, 1.25, 2.0, 3.0)
LIFT_LEGEND = ("< 0.5", "0.5–0.8", "0.8–1.25", "1.25–2", "2–3", "≥ 3")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LOAD_BANDS = 5


def _number(value: Any) -> bool:
    """A figure to compare: not missing (None) and not withheld (marks.WITHHELD)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def lift_band(lift: Any) -> int | None:
    if not _number(lift):
        return None
    return sum(float(lift) >= edge for edge in LIFT_EDGES)


def is_hotspot(row: dict[str, Any]) -> bool:
    lift: Any = row.get("lift")
    requests: Any = row.get("requests")
    if not _number(lift) or not _number(requests):
        return False
    return float(lift) >= HOTSPOT_LIFT and int(requests) >= HOTSPOT_MIN_REQUESTS


@dataclass(frozen=True)
class DemandGrid:
    schools: list[str]
    subjects: list[str]
    cells: dict[tuple[str, str], dict[str, Any]]
    hotspots: list[dict[str, Any]]

    def cell(self, school: str, subject: str) -> dict[str, Any] | None:
        return self.cells.get((school, subject))


def demand_grid(rows: list[dict[str, Any]]) -> DemandGrid:
    """Rows of GET /v1/metrics/demand?group_by=school,subject as a grid, subjects by volume."""
    volume: dict[str, int] = {}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        school, subject = row["school_id"], row["subject"]
        volume[subject] = volume.get(subject, 0) + (row["requests"] or 0)
        cells[(school, subject)] = {
            **row,
            "band": lift_band(row["lift"]),
            "hotspot": is_hotspot(row),
        }
    subjects = sorted(volume, key=lambda s: (-volume[s], s))
    schools = sorted({school for school, _ in cells})
    hotspots = sorted((c for c in cells.values() if c["hotspot"]), key=lambda c: -(c["lift"] or 0))
    return DemandGrid(schools, subjects, cells, hotspots)


@dataclass(frozen=True)
class TimingGrid:
    hours: list[int]
    days: list[tuple[int, str, list[dict[str, Any]]]]


def load_band(requests: int, peak: int) -> int:
    """0 for none, then 1..LOAD_BANDS by share of the busiest cell."""
    if requests <= 0 or peak <= 0:
        return 0
    return max(1, min(LOAD_BANDS, -(-requests * LOAD_BANDS // peak)))


def timing_grid(rows: list[dict[str, Any]]) -> TimingGrid:
    """The 168 (weekday, hour) cells of GET /v1/metrics/timing as 7 rows of 24."""
    peak = max((r["requests"] or 0 for r in rows), default=0)
    days = []
    for weekday in range(1, 8):
        cells = [
            {**r, "band": load_band(r["requests"] or 0, peak)}
            for r in sorted(rows, key=lambda r: r["hour"])
            if r["weekday"] == weekday
        ]
        days.append((weekday, WEEKDAYS[weekday - 1], cells))
    return TimingGrid(list(range(24)), days)
