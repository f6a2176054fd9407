"""Small-cell suppression: what a `dashboard` key may see of a metric response.

Applied to a finished metric response (whatever computed it), keyed on the caller's role and
the district's `suppression_threshold` (districts file, default 10). For the dashboard role:

1. **Primary.** Every count from 1 to threshold − 1 is withheld (`null`); so is a count whose
   complement in its row would be that small (`helped` when few said "not helped";
   `in_school_requests` when few asked out of school in that hour).
2. **Derived.** Every rate, share, mean or percentile computed from a withheld count is
   withheld too.
3. **Complementary.** Counts that add up to a total the caller can see (the rows of a
   grouping add up to the district's figure; a school's subjects to the school; hours and
   weekdays to their margins; requests = matched + unmatched) never leave exactly one cell of
   such a line withheld (unless that total is itself small, hence withheld too): the
   smallest other cell is withheld with it, again and again until no line has a single
   withheld cell, and until no withheld cell is fixed by several lines' totals together
   (api/metrics/derivable.py), so no withheld value can be recomputed by subtraction.

4. **Neighbours.** Given the answers one step away (api/http/published.py: the previous
   published position, the range a week shorter at either end), a count that differs from
   its cell in any of them by 1 to threshold − 1 is withheld as if it were small, so two
   adjacent answers never isolate fewer than threshold records by subtraction.
5. **Telling zeros.** In a row (or response) with a count withheld by rules 1 or 4, its zero
   counts are withheld too: next to a withheld small count, `sessions_cancelled: 0` says
   "none of these few". (Applied before rule 3, so a withheld zero is closed like any cell.)

A row or response with anything withheld carries `"suppressed": true`. Auditors and admins
see exact figures. Elsewhere a zero is shown: it identifies nobody. A metric without a
planner is refused for every other role (`Unprotected`), never shown exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from tutorledger.api.metrics.derivable import unfix
from tutorledger.domain.errors import TutorLedgerError

EXACT_ROLES = frozenset({"auditor", "admin"})
M = TypeVar("M", bound=BaseModel)
Cell = tuple[int, str]  # (id of the dict holding it, field name)
Address = tuple[Any, ...]  # where a dict sits in a response, the same in every answer
KEY_NUMBERS = frozenset({"hour", "weekday", "grade"})  # numbers that name a row, not count it


@dataclass
class Plan:
    """The cells of one response and the rules that tie them together."""

    holders: dict[int, dict[str, Any]] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    lines: list[list[Cell]] = field(default_factory=list)  # sum published elsewhere
    closed: list[list[Cell]] = field(default_factory=list)  # identities inside the response
    derived: list[tuple[Cell, list[Cell]]] = field(default_factory=list)
    complements: list[tuple[Cell, Cell, Cell]] = field(default_factory=list)  # whole, part, hide

    def cell(self, holder: dict[str, Any], name: str) -> Cell:
        self.holders[id(holder)] = holder
        c = (id(holder), name)
        if c not in self.cells:
            self.cells.append(c)
        return c

    def value(self, c: Cell) -> Any:
        return self.holders[c[0]].get(c[1])


# Declares a response's cells, lines, identities and derived figures (one per metric).
Planner = Callable[[Plan, dict[str, Any]], None]


def _small(value: Any, k: int) -> bool:
    return isinstance(value, int) and 0 < value < k


def _total(plan: Plan, line: list[Cell]) -> int:
    return sum(v for c in line if isinstance(v := plan.value(c), int))


def _walk(node: dict[str, Any], at: Address = ()) -> Iterator[tuple[Address, dict[str, Any]]]:
    """Every dict of a response with its address: list items are named by their key fields
    (school, subject, week, hour …), so a row is found again in another answer."""
    yield at, node
    for name, value in node.items():
        for item in value if isinstance(value, list) else ():
            if isinstance(item, dict):
                key = tuple(
                    (f, v) for f, v in sorted(item.items())
                    if isinstance(v, str | date) or (f in KEY_NUMBERS and isinstance(v, int))
                )  # fmt: skip
                yield from _walk(item, (*at, name, key))


def moved(
    plan: Plan, data: dict[str, Any], neighbours: Sequence[dict[str, Any]], k: int
) -> set[Cell]:
    """Counts that differ from the same cell of a neighbouring answer by 1 … k − 1 (a cell
    missing there counts 0 there)."""
    where = {id(holder): at for at, holder in _walk(data)}
    found: set[Cell] = set()
    for other in neighbours:
        there = dict(_walk(other))
        for c in plan.cells:
            value = plan.value(c)
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            peer = there.get(where.get(c[0], ()), {}).get(c[1], 0)
            if isinstance(peer, int) and 0 < abs(value - peer) < k:
                found.add(c)
    return found


def telling_zeros(plan: Plan, hidden: set[Cell]) -> set[Cell]:
    """Zero counts of the rows that have something withheld (before complements are chosen,
    so that a withheld zero is never the one open cell of a line)."""
    rows = {holder for holder, _ in hidden}
    return {c for c in plan.cells if c[0] in rows and plan.value(c) == 0}


def withheld(plan: Plan, k: int, also: set[Cell] | None = None) -> set[Cell]:
    """Primary (with `also`, cells withheld for another reason), then complementary
    suppression until every line is safe.

    An open line's total is published elsewhere unless it is small itself (then it is
    withheld there by the same rule, and one withheld cell here reveals nothing). A cell that
    is alone in an open line is pinned: its value is that published total, so it is chosen
    as a complement only when no other cell can be.
    """
    hidden = {c for c in plan.cells if _small(plan.value(c), k)} | (also or set())
    for whole, part, hide in plan.complements:
        w, p = plan.value(whole), plan.value(part)
        if isinstance(w, int) and isinstance(p, int) and _small(w - p, k):
            hidden.add(hide)
    hidden |= telling_zeros(plan, hidden)
    pinned = {line[0] for line in plan.lines if len(line) == 1}
    exposed = [(line, pinned) for line in plan.lines if _total(plan, line) >= k]
    exposed += [(line, set()) for line in plan.closed]  # must close even with a pinned cell
    summed = [line for line, _ in exposed[: len(exposed) - len(plan.closed)] if len(line) > 1]

    def rank(c: Cell) -> tuple[bool, Any]:
        return plan.value(c) == 0, plan.value(c)

    changed = True
    while changed:
        changed = False
        for line, avoid in exposed:
            if sum(c in hidden for c in line) != 1:
                continue
            open_cells = [c for c in line if c not in hidden]
            # The smallest other cell (nonzero first), a pinned one only when nothing else is.
            others = [c for c in open_cells if c not in avoid] or open_cells
            if others:
                hidden.add(min(others, key=rank))
                changed = True
        if not changed:  # no line has one withheld cell; do the lines fix one together?
            more = unfix(summed, hidden, pinned, rank)
            changed = more is not None
            hidden |= {more} if more is not None else set()
    return hidden


def _grouped(plan: Plan, body: dict[str, Any], counts: tuple[str, ...]) -> None:
    """Each count column of grouped rows: a line over all rows (their sum is the filter's
    total) and, for two dimensions (school × subject, school × provider …), one per value of
    each (the margins)."""
    rows = body["rows"]
    two_way = len(body.get("group_by") or ()) >= 2
    for name in counts:
        cells = [plan.cell(r, name) for r in rows]
        plan.lines.append(cells)
        for key in ("school_id", "subject", "student_group", "provider") if two_way else ():
            by: dict[Any, list[Cell]] = defaultdict(list)
            for r, c in zip(rows, cells, strict=True):
                by[r.get(key)].append(c)
            plan.lines.extend(by.values())
    _margins(plan, body, counts)


def _margins(plan: Plan, body: dict[str, Any], counts: tuple[str, ...]) -> None:
    """Rows by roster group beside the same rows without the split (`margins`): groups
    overlap, so they do not add up to a margin, but a margin minus a group is the rest of the
    district, which must not be small either: a group's count is withheld when it is."""
    margins = body.get("margins") or []
    if not margins:
        return
    by_key = {_other_keys(m): m for m in margins}
    for name in counts:
        plan.lines.append([plan.cell(m, name) for m in margins])
    for r in body["rows"]:
        margin = by_key.get(_other_keys(r))
        if margin is None:
            continue
        for name in counts:
            part = plan.cell(r, name)
            plan.complements.append((plan.cell(margin, name), part, part))


def _other_keys(row: dict[str, Any]) -> tuple[Any, Any, Any]:
    return row.get("school_id"), row.get("subject"), row.get("provider")


def _every_row(body: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = body["rows"]
    return rows + (body.get("margins") or [])


def plan_participation(plan: Plan, body: dict[str, Any]) -> None:
    c = {n: plan.cell(body, n) for n in (
        "enrolled", "cohort_size", "students_served", "sessions_requested", "sessions_matched",
        "sessions_completed", "sessions_cancelled")}  # fmt: skip
    base = c["enrolled"] if body.get("cohort_size") is None else c["cohort_size"]
    plan.derived.append(((id(body), "reach_rate"), [c["students_served"], base]))
    plan.derived.append(
        ((id(body), "sessions_per_served_student"), [c["sessions_requested"], c["students_served"]])
    )


def plan_demand(plan: Plan, body: dict[str, Any]) -> None:
    _grouped(plan, body, ("requests", "completed", "students"))
    for r in _every_row(body):
        for name in ("share", "lift"):
            plan.derived.append(((id(r), name), [(id(r), "requests")]))


def plan_wait_times(plan: Plan, body: dict[str, Any]) -> None:
    _grouped(plan, body, ("requests", "matched", "unmatched"))
    for r in _every_row(body):
        plan.closed.append([(id(r), n) for n in ("requests", "matched", "unmatched")])
        for name in ("p50", "p90", "p99", "max"):
            plan.derived.append(((id(r), name), [(id(r), "matched")]))


def plan_satisfaction(plan: Plan, body: dict[str, Any]) -> None:
    _grouped(plan, body, ("completed", "surveys", "helped"))
    for r in _every_row(body):
        surveys, helped, completed = ((id(r), n) for n in ("surveys", "helped", "completed"))
        plan.complements.append((surveys, helped, helped))
        plan.derived.append(((id(r), "helped_rate"), [helped, surveys]))
        plan.derived.append(((id(r), "mean_rating"), [surveys]))
        plan.derived.append(((id(r), "survey_rate"), [surveys, completed]))


def plan_timing(plan: Plan, body: dict[str, Any]) -> None:
    total, after = plan.cell(body, "requests"), plan.cell(body, "after_school_requests")
    plan.derived.append(((id(body), "after_school_share"), [after, total]))
    plan.lines.append([plan.cell(h, "requests") for h in body["by_hour"]])
    plan.lines.append([plan.cell(w, "requests") for w in body["by_weekday"]])
    cells = body["rows"]
    for key in ("weekday", "hour"):
        by: dict[int, list[Cell]] = defaultdict(list)
        for r in cells:
            by[r[key]].append(plan.cell(r, "requests"))
        plan.lines.extend(by.values())
    plan.lines.append([after, *(plan.cell(r, "in_school_requests") for r in cells)])
    for r in cells:
        requests, in_school = (id(r), "requests"), (id(r), "in_school_requests")
        plan.complements.append((requests, in_school, in_school))


def plan_engagement(plan: Plan, body: dict[str, Any]) -> None:
    for name in ("students", "regular_students", "one_time_students"):
        plan.cell(body, name)
    rows = body["rows"]
    for r in rows:
        plan.cell(r, "weekly_active_students")
    plan.lines.append([plan.cell(r, "requests") for r in rows])


def plan_dosage(plan: Plan, body: dict[str, Any]) -> None:
    sessions, students = plan.cell(body, "sessions_completed"), plan.cell(body, "students_served")
    for name in ("minutes", "length_mean", "length_p50", "length_p90", "length_p99", "length_max"):
        plan.derived.append(((id(body), name), [sessions]))
    plan.derived.append(((id(body), "minutes_per_student"), [sessions, students]))
    for r in body["rows"]:
        active, meeting = plan.cell(r, "active_students"), plan.cell(r, "students_meeting_target")
        plan.complements.append((active, meeting, meeting))
        plan.derived.append(((id(r), "minutes"), [active]))


def plan_outcomes(plan: Plan, body: dict[str, Any]) -> None:
    plan.lines.append([plan.cell(r, "students") for r in body["rows"]])
    for r in body["rows"]:
        for name in ("mean_from", "mean_to", "mean_change"):
            plan.derived.append(((id(r), name), [(id(r), "students")]))


class Unprotected(TutorLedgerError):
    """A metric without a suppression planner was about to be shown to a key that must not
    see small cells: refused rather than shown exact (privacy never fails open)."""

    code = "metric_unprotected"
    status = 500


class Protected(Protocol):
    """What suppression needs of a metric (a registry entry): its name and its planner."""

    @property
    def name(self) -> str: ...

    @property
    def planner(self) -> Planner | None: ...


def suppress_metric(
    metric: Protected,
    body: M,
    role: str,
    threshold: int,
    neighbours: Sequence[BaseModel] = (),
) -> M:
    """The response as `role` may see it: exact for auditors and admins; for others, small
    cells, cells that moved by a small count from a `neighbours` answer, and everything
    derived from them withheld (see the module docstring), or `Unprotected` when the metric
    has no planner."""
    if role in EXACT_ROLES:
        return body
    if not callable(metric.planner):
        raise Unprotected(f"metric '{metric.name}' has no suppression planner")
    data = body.model_dump(mode="python")
    plan = Plan()
    metric.planner(plan, data)
    near = [n.model_dump(mode="python") for n in neighbours]
    hidden = withheld(plan, threshold, moved(plan, data, near, threshold))
    for target, sources in plan.derived:
        if any(s in hidden for s in sources):
            plan.holders[target[0]][target[1]] = None
            hidden.add(target)
    for holder_id, field_name in hidden:
        holder = plan.holders[holder_id]
        holder[field_name] = None
        if holder is not data:
            holder["suppressed"] = True
    data["suppressed"] = bool(hidden)
    return type(body).model_validate(data)
