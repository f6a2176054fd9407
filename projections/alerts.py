"""Early alerts: figures unusual enough to act on, each with the metric query that shows it.

Every alert is computed from the same read models and functions as the metrics, over windows
of local dates that end at a given `at` date and at a ledger position, so a list of alerts can
be recomputed exactly later. School-level kinds live here; the student-level ones in
`alerts_students`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from tutorledger.domain.alert_rules import AlertRules
from tutorledger.domain.student_groups import GROUP_LABELS
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections import overlap
from tutorledger.projections.demand import BY_PAIR, demand
from tutorledger.projections.engagement import iso_week
from tutorledger.projections.filters import Filters, facts_where
from tutorledger.projections.steps import REQUESTED
from tutorledger.projections.student_groups import equity_gaps
from tutorledger.projections.wait_times import wait_times

Evidence = tuple[str, dict[str, Any]]  # a metric path and its query parameters
EARLIEST = date(1970, 1, 1)  # no window starts before the first date the API accepts


@dataclass
class Alert:
    """One alert: what, where, the figures that triggered it and where to see them."""

    kind: str
    scope: dict[str, str]
    window: tuple[date, date]
    figures: dict[str, Any]
    evidence: list[Evidence] = field(default_factory=list)


LATEST_SQL = """
SELECT toDate(max(occurred_at), %(tz)s), count() FROM ledger_events
WHERE district_id = %(district_id)s AND position <= %(as_of)s AND type = 'session.requested'
"""

WEEKLY_ACTIVE_SQL = """
SELECT school_id, toMonday(toDate(requested_at, %(tz)s)) AS week, uniqExact(student_key)
FROM {facts} WHERE {where}
GROUP BY school_id, week
"""


def latest_local_date(store: ProjectionStore, filters: Filters) -> date | None:
    """The local date of the district's latest request at the position (None: none).
    Requests only: a roster or school update is recorded when it is loaded, which says
    nothing about when students last asked for help; and surveys come up to days after
    their sessions, so a survey on Monday would make a week whose requests stopped on
    Friday look complete (a falling-use alert against a week without its weekend)."""
    rows = store.execute(LATEST_SQL, filters.params())
    if not rows or not int(rows[0][1]):
        return None
    return date.fromisoformat(str(rows[0][0]))


def window(base: Filters, at: date, days: int) -> tuple[Filters, tuple[date, date]]:
    """The `days` local dates ending at `at`, inclusive, at the same position."""
    first = max(at - timedelta(days=days - 1), EARLIEST)
    return replace(base, date_from=first, date_to=at), (first, at)


def query(filters: Filters, **extra: Any) -> dict[str, Any]:
    """Metric query parameters that reproduce figures computed under `filters`."""
    params: dict[str, Any] = {"district_id": filters.district_id}
    named = (("school_id", filters.school_id), ("subject", filters.subject),
             ("provider", filters.provider))  # fmt: skip
    for name, value in named:
        if value is not None:
            params[name] = value
    if filters.date_from is not None:
        params["from"] = filters.date_from.isoformat()
    if filters.date_to is not None:
        params["to"] = filters.date_to.isoformat()
    return {**params, **extra, "as_of_position": filters.as_of_position}


def subject_hotspots(
    store: ProjectionStore, base: Filters, at: date, rules: AlertRules
) -> list[Alert]:
    """School × subject pairs asked about far more than the district asks (demand's lift)."""
    f, span = window(base, at, rules.hotspot_days)
    found = []
    for row in demand(store, f, BY_PAIR):
        if row["requests"] < rules.hotspot_requests or (row["lift"] or 0) < rules.hotspot_lift:
            continue
        scope = {"school_id": row["school_id"], "subject": row["subject"]}
        figures = {k: row[k] for k in ("requests", "students", "share", "lift")}
        evidence = ("demand", query(replace(f, **scope)))
        found.append(Alert("subject_hotspot", scope, span, figures, [evidence]))
    return found


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def long_waits(store: ProjectionStore, base: Filters, at: date, rules: AlertRules) -> list[Alert]:
    """Schools whose p90 wait is more than `long_wait_ratio` times the district's."""
    f, span = window(base, at, rules.long_wait_days)
    district = wait_times(store, f, ())[0]["p90"]
    if district is None:
        return []
    limit = Fraction(str(rules.long_wait_ratio)) * _us(district)
    found = []
    for row in wait_times(store, f, ("school_id",)):
        p90 = row["p90"]
        if p90 is None or _us(p90) <= limit:
            continue
        figures = {
            "matched": row["matched"],
            "school_p90": p90,
            "district_p90": district,
            "ratio": p90 / district if district else None,
        }
        evidence = [
            ("wait-times", query(f, group_by="school")),
            ("wait-times", query(f)),
        ]
        scope = {"school_id": row["school_id"]}
        found.append(Alert("long_waits", scope, span, figures, evidence))
    return found


def falling_use(store: ProjectionStore, base: Filters, at: date, rules: AlertRules) -> list[Alert]:
    """Schools whose weekly active students fell by `falling_use_drop` or more: the last
    complete ISO week on or before `at` against the week `falling_use_weeks` before it."""
    last = at - timedelta(days=6)
    last -= timedelta(days=last.weekday())
    first = last - timedelta(weeks=rules.falling_use_weeks)
    span = (max(first, EARLIEST), last + timedelta(days=6))
    f = replace(base, date_from=span[0], date_to=span[1])
    sql = WEEKLY_ACTIVE_SQL.format(facts=f.tables(store).facts, where=facts_where(f, (REQUESTED,)))
    active: dict[tuple[str, date], int] = {}
    for school, week, n in store.execute(sql, f.params()):
        active[(str(school), date.fromisoformat(str(week)))] = int(n)
    drop = Fraction(str(rules.falling_use_drop))
    found = []
    for school in sorted({s for s, _ in active}):
        before, after = active.get((school, first), 0), active.get((school, last), 0)
        if before < rules.falling_use_students or Fraction(before - after, before) < drop:
            continue
        figures = {
            "week_before": iso_week(first),
            "week_after": iso_week(last),
            "active_before": before,
            "active_after": after,
            "drop": (before - after) / before,
        }
        evidence = ("engagement", query(replace(f, school_id=school)))
        scope = {"school_id": school}
        found.append(Alert("falling_use", scope, span, figures, [evidence]))
    return found


def equity_gap(store: ProjectionStore, base: Filters, at: date, rules: AlertRules) -> list[Alert]:
    """Roster groups behind the rest of the district by more than `equity_gap_margin` in a
    measure over the last `equity_gap_days`, the whole 95 % interval below zero, with at
    least `equity_gap_students` students in the group and in the rest."""
    f, span = window(base, at, rules.equity_gap_days)
    found = []
    for row in equity_gaps(store, f)["rows"]:
        big = min(row["students"], row["rest_students"]) >= rules.equity_gap_students
        d, high = row["difference"], row["ci_high"]
        if not big or d is None or d >= -rules.equity_gap_margin or high >= 0:
            continue
        figures = {"label": GROUP_LABELS.get(row["group"], row["group"])}
        figures |= {k: v for k, v in row.items() if k != "group"}
        evidence = ("equity-gaps", query(f))
        found.append(Alert("equity_gap", {"group": row["group"]}, span, figures, [evidence]))
    return found


def tutor_overlap(
    store: ProjectionStore, base: Filters, at: date, rules: AlertRules
) -> list[Alert]:
    """Tutors (per provider) with ≥ `tutor_overlap_sessions` sessions overlapping another of
    theirs, making ≥ `tutor_overlap_share` of their sessions, in the last `tutor_overlap_days`."""
    f, span = window(base, at, rules.tutor_overlap_days)
    share = Fraction(str(rules.tutor_overlap_share))
    found = []
    for tutor in overlap.tutor_overlap(store, f):
        if tutor.overlapping < rules.tutor_overlap_sessions:
            continue
        if Fraction(tutor.overlapping, tutor.sessions) < share:
            continue
        figures = tutor.as_dict()
        del figures["weeks"], figures["provider"], figures["tutor_id"]
        scope = {"provider": tutor.provider, "tutor_id": tutor.tutor_id}
        # Sessions without provenance ('') cannot be asked for by provider: the whole list.
        evidence = ("tutor-overlap", query(replace(f, provider=tutor.provider or None)))
        found.append(Alert("tutor_overlap", scope, span, figures, [evidence]))
    return found


SCHOOL_KINDS = (subject_hotspots, long_waits, falling_use, equity_gap, tutor_overlap)


def school_alerts(
    store: ProjectionStore, base: Filters, at: date, rules: AlertRules
) -> list[Alert]:
    """Every school-level alert at `at`, in a fixed order (kind, then scope)."""
    return [alert for kind in SCHOOL_KINDS for alert in kind(store, base, at, rules)]
