"""The metric registry: each metric the API serves is declared here once.

An entry names the metric (its path, GET /v1/metrics/<name>), how it is computed, its
response schema, its OpenAPI summary and definition with a worked example, its small-cell
suppression planner (required: suppression refuses a metric without one), whether it takes
`group_by` and its default grouping, how its CSV rows are made, and the dashboard tables
(CSV downloads) it feeds. The routes (api/http/routes/metrics.py), their OpenAPI text, the
CSV answers, the dashboard's metric tables and the replay of every metric all read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from tutorledger.api.metrics import by_group, standard
from tutorledger.api.metrics import schemas as ms
from tutorledger.api.metrics import suppression as plans
from tutorledger.api.metrics.csv import Table, table
from tutorledger.api.metrics.docs import COMMON, GROUPING
from tutorledger.api.metrics.equity import EquityGaps, plan_equity
from tutorledger.api.metrics.insight_schemas import Outcomes
from tutorledger.api.metrics.scope import Scope
from tutorledger.api.metrics.suppression import Planner
from tutorledger.domain.envelope import DISTRICT_PATTERN
from tutorledger.domain.student_groups import GROUP_LABELS
from tutorledger.infra.clickhouse import ProjectionStore
from tutorledger.projections.demand import demand
from tutorledger.projections.dosage import dosage
from tutorledger.projections.dosage_standard import met_students_sql
from tutorledger.projections.engagement import REGULAR_WEEKS, engagement
from tutorledger.projections.grouped_figures import (
    dosage_groups,
    engagement_groups,
    participation_groups,
    timing_groups,
)
from tutorledger.projections.groups import GROUPS, STUDENT_GROUP
from tutorledger.projections.outcomes import INTERPRETATION, outcomes
from tutorledger.projections.participation import participation
from tutorledger.projections.satisfaction import satisfaction
from tutorledger.projections.student_groups import equity_gaps
from tutorledger.projections.timing import timing
from tutorledger.projections.wait_times import wait_times

Keys = tuple[str, ...]  # group_by columns, as projections.groups.parse_group_by gives them
Opt = TypeVar("Opt")  # what a metric reads from its own query parameters (its grouping, terms)
SCHOOL: Keys = ("school_id",)


@dataclass(frozen=True)
class Figure:
    """A dashboard table of a metric: GET /dashboard/{district}/csv/<table>, with `keys` as
    the metric's `group_by` (None: its default)."""

    table: str
    keys: Keys | None = None


@dataclass(frozen=True)
class Metric(Generic[Opt]):
    """One metric, declared once. `options` is a FastAPI dependency reading the metric's own
    query parameters (None: `group_by` when the metric takes it, else nothing); `filters`
    False means the metric takes only the district, cohort, position and format."""

    name: str
    summary: str
    definition: str  # the /docs text: what each figure means, with a worked example
    response: type[BaseModel]
    compute: Callable[[ProjectionStore, Scope, Opt], BaseModel]
    planner: Planner
    group_by: Keys | None = None  # the default grouping; None: no `group_by` parameter
    options: Callable[..., Opt] | None = None
    filters: bool = True
    csv_rows: Callable[[BaseModel], Table] = table
    figures: tuple[Figure, ...] | None = None  # None: one table named after the metric
    not_found: str | None = None  # its own 404 description (default: unknown cohort)
    grouping: str | None = None  # its own `group_by` text (default: the shared GROUPING)

    @property
    def description(self) -> str:
        """The OpenAPI description: the definition, then the shared grouping and filter text."""
        grouping = (self.grouping or GROUPING) if self.group_by is not None else ""
        return self.definition + grouping + (COMMON if self.filters else "")

    @property
    def tables(self) -> tuple[Figure, ...]:
        return (Figure(self.name),) if self.figures is None else self.figures

    def answer(self, store: ProjectionStore, scope: Scope, options: Opt) -> BaseModel:
        """The response as the scope's caller may see it (suppressed for dashboard keys)."""
        return scope.protect(self.compute(store, scope, options), self)


def _group_names(keys: Keys) -> list[str]:
    return [name for name, column in GROUPS.items() if column in keys]


def _participation(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    groups = by_group.group_fields(keys, lambda k: participation_groups(store, scope.filters, k))
    return ms.Participation(**scope.envelope(), **participation(store, scope.filters), **groups)


def _grouped(
    scope: Scope, keys: Keys, rows_of: Callable[[Keys], list[dict[str, Any]]]
) -> dict[str, Any]:
    """A grouped answer's body; by roster group, with the rows without the group split
    (`margins`: what each group's row is part of, for suppression's complements)."""
    body = {**scope.envelope(), "group_by": _group_names(keys), "rows": rows_of(keys)}
    if STUDENT_GROUP in keys:
        body["margins"] = rows_of(tuple(k for k in keys if k != STUDENT_GROUP))
    return body


def _demand(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    body = _grouped(scope, keys, lambda k: demand(store, scope.filters, k))
    return ms.Demand.model_validate(body)


def _wait_times(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    body = _grouped(scope, keys, lambda k: wait_times(store, scope.filters, k))
    return ms.WaitTimes.model_validate(body)


def _satisfaction(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    body = _grouped(scope, keys, lambda k: satisfaction(store, scope.filters, k))
    return ms.Satisfaction.model_validate(body)


def _timing(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    hours = scope.profile.school_hours
    figures = timing(store, scope.filters, hours)
    figures |= by_group.group_fields(keys, lambda k: timing_groups(store, scope.filters, hours, k))
    school_hours = ms.SchoolHoursOut(days=list(hours.days), start=hours.start, end=hours.end)
    return ms.Timing(
        **scope.envelope(), time_zone=scope.filters.tz, school_hours=school_hours, **figures
    )


def _engagement(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    figures = engagement(store, scope.filters)
    figures |= by_group.group_fields(keys, lambda k: engagement_groups(store, scope.filters, k))
    return ms.Engagement(**scope.envelope(), regular_weeks=REGULAR_WEEKS, **figures)


def _dosage(store: ProjectionStore, scope: Scope, keys: Keys) -> BaseModel:
    figures = dosage(store, scope.filters, scope.profile.dosage_target_minutes)
    figures |= by_group.group_fields(keys, lambda k: dosage_groups(store, scope.filters, k))
    return ms.Dosage(**scope.envelope(), **figures)


def _equity(store: ProjectionStore, scope: Scope, _: Keys) -> BaseModel:
    profile = scope.profile
    met = met_students_sql(store, scope.filters, profile.dosage_standard, profile.school_hours)
    figures = equity_gaps(store, scope.filters, met)
    for row in figures["rows"]:
        row["label"] = GROUP_LABELS.get(row["group"], row["group"])
    return EquityGaps(**scope.envelope(), **figures)


@dataclass(frozen=True)
class Terms:
    """The outcomes metric's own choices: a subject and the two terms it compares."""

    subject: str
    term_from: str
    term_to: str


TermQ = Annotated[str, Query(pattern=DISTRICT_PATTERN, description="A term id as imported")]


def outcome_terms(
    subject: Annotated[str, Query(pattern=r"^[A-Za-z0-9-]{1,64}$")],
    term_from: TermQ,
    term_to: TermQ,
) -> Terms:
    return Terms(subject, term_from, term_to)


def _outcomes(store: ProjectionStore, scope: Scope, terms: Terms) -> BaseModel:
    subject = terms.subject.lower()
    pinned = replace(scope, filters=replace(scope.filters, subject=subject))
    return Outcomes(
        **pinned.envelope(),
        subject=subject,
        term_from=terms.term_from,
        term_to=terms.term_to,
        interpretation=INTERPRETATION,
        **outcomes(store, pinned.filters, terms.term_from, terms.term_to),
    )


PARTICIPATION = Metric[Keys](
    name="participation",
    summary="Who used tutoring and how much",
    definition=(
        "`students_served`: distinct students with at least one request in the range. "
        "`enrolled`: sum of each school's latest enrolment (by `as_of` date, on or before "
        "`to`), limited to the school/grade filters. `reach_rate` = served / enrolled (null "
        "when nothing is enrolled). `sessions_matched`/`completed`/`cancelled` count sessions "
        "that reached that step. `sessions_per_served_student` = requested ÷ served. CSV: one row "
        "of these figures. Example: sch-01 enrols 400 students; 48 of them made 120 requests "
        "in the range → students_served 48, reach_rate 0.12, sessions_per_served_student 2.5."
    ),
    response=ms.Participation,
    compute=_participation,
    planner=by_group.plan_participation,
    group_by=(),
    csv_rows=by_group.grouped_csv(ms.ParticipationGroup),
    grouping=by_group.grouping_text(
        "`students_served`, `sessions_requested`, `sessions_matched`, `sessions_completed`, "
        "`sessions_cancelled` and `sessions_per_served_student` (no enrolment or reach rate)"
    ),
)
DEMAND = Metric[Keys](
    name="demand",
    summary="Where requests come from; school × subject hotspots",
    definition=(
        "Per group: `requests`, `completed` (of those requests), `students` (distinct).\n\n"
        "Each row has a *scope school* — its own school when grouped by school, else the "
        "`school_id` filter, else the whole district — and *scope subjects* — its own subject "
        "when grouped by subject, else the `subject` filter, else all subjects. "
        "`share` = scope school's requests in the scope subjects ÷ scope school's requests in "
        "all subjects. `lift` = `share` ÷ the district's share of the same subjects. Grade and "
        "date filters apply to every count; school and subject filters only choose the rows.\n\n"
        "Example (`group_by=school,subject`): school sch-03 has 1,200 requests, 540 in geometry "
        "→ share 0.45; the district has 12,000 requests, 1,320 in geometry (0.11) → lift "
        "0.45 / 0.11 ≈ 4.1: geometry is asked four times as often there. With "
        "`group_by=school` and `subject=geometry` the rows are the same figures per school; "
        "with `group_by=subject` the scope is the district (lift 1) unless `school_id` is "
        "given. Default `group_by`: `school,subject`."
    ),
    response=ms.Demand,
    compute=_demand,
    planner=plans.plan_demand,
    group_by=("school_id", "subject"),
)
WAIT_TIMES = Metric[Keys](
    name="wait-times",
    summary="Request → match wait, seconds",
    definition=(
        "Wait = `session.matched` time − `session.requested` time, to the microsecond, in "
        "seconds; only matched requests have one (including those cancelled after the match). "
        "`unmatched` = requests never matched as of the position: still waiting, or cancelled "
        "before a tutor came. `requests` = `matched` + `unmatched`.\n\n"
        "**Percentiles are nearest-rank**: pP is the ⌈P·n/100⌉-th smallest of the n waits "
        "(the smallest wait with at least P% of waits at or below it); always an observed "
        "wait, never interpolated. Example: waits 30, 40, 50, 60, 600 s (n = 5) → p50 is the "
        "⌈2.5⌉ = 3rd = 50 s; p90 the ⌈4.5⌉ = 5th = 600 s; p99 = max = 600 s. With no matched "
        "request the percentiles and `max` are null."
    ),
    response=ms.WaitTimes,
    compute=_wait_times,
    planner=plans.plan_wait_times,
    group_by=(),
    figures=(Figure("wait-times", SCHOOL), Figure("wait-times-all")),
)
SATISFACTION = Metric[Keys](
    name="satisfaction",
    summary="Post-session surveys",
    definition=(
        "Over the sessions requested in range, whenever their survey arrived (a late survey "
        "counts once it is in the ledger at or before the position): `surveys` (sessions "
        "surveyed), `helped` (surveys with helped = true), `helped_rate` = helped ÷ surveys, "
        "`mean_rating` = sum of ratings ÷ surveys, `survey_rate` = surveys ÷ `completed` "
        "(sessions completed). Ratios are null when their denominator is 0. Example: 10 "
        "completed, 6 surveyed with ratings 5,5,5,4,4,2 and helped 5 times → survey_rate "
        "0.6, helped_rate 0.8333…, mean_rating 4.1666…."
    ),
    response=ms.Satisfaction,
    compute=_satisfaction,
    planner=plans.plan_satisfaction,
    group_by=(),
    figures=(Figure("satisfaction"), Figure("satisfaction-by-school", SCHOOL)),
)
TIMING = Metric[Keys](
    name="timing",
    summary="When students ask: local hour, weekday, after school",
    definition=(
        "Requests by the district's *local* clock (its configured time zone, DST applied: "
        "on the autumn change day 01:00-01:59 happens twice and both count in hour 1; on the "
        "spring day hour 2 is empty). `rows`: all 168 (ISO weekday 1 = Monday … 7, hour 0-23) "
        "cells with `requests` and `in_school_requests`; `by_hour` and `by_weekday` sum them. "
        "A request is *in school* when its local weekday is a school day and its local time "
        "is in [start, end) of the district's school hours (default Mon-Fri 08:00-15:30; "
        "per district in `TUTORLEDGER_DISTRICTS_FILE`). `after_school_share` = requests not "
        "in school ÷ requests (evenings, early mornings, weekends). Example: a Tuesday request "
        "at 15:29:59 is in school, at 15:30:00 it is after school."
    ),
    response=ms.Timing,
    compute=_timing,
    planner=by_group.plan_timing,
    group_by=(),
    csv_rows=by_group.grouped_csv(ms.TimingGroup),
    grouping=by_group.grouping_text(
        "`requests`, `in_school_requests`, `after_school_requests` and `after_school_share` "
        "(no hour or weekday cells)"
    ),
)
ENGAGEMENT = Metric[Keys](
    name="engagement",
    summary="Weekly active, regular and one-time students",
    definition=(
        "Weeks are ISO weeks (Monday-Sunday) of each request's local date. `rows`: one per ISO "
        "week from the week of `from` (else the first active week) to the week of `to` (else "
        "the last), zeros included, with `weekly_active_students` (distinct students with a "
        "request in that week and in range) and `requests`. `students`: distinct students "
        "with a request in range; `regular_students`: of those, active in at least "
        "`regular_weeks` (3) distinct ISO weeks of the range; `one_time_students`: exactly one "
        "request in range. A week cut by `from`/`to` counts only its days in range. Example: "
        "a student with requests on Mon 2026-10-26, Tue 10-27 and Mon 11-02 is active in "
        "2026-W44 and 2026-W45: neither regular nor one-time."
    ),
    response=ms.Engagement,
    compute=_engagement,
    planner=by_group.plan_engagement,
    group_by=(),
    csv_rows=by_group.grouped_csv(ms.EngagementGroup),
    grouping=by_group.grouping_text(
        "`students`, `regular_students`, `one_time_students` and `requests` (a student is "
        "regular in a group when active there in 3 weeks; no weekly rows)"
    ),
)
DOSAGE = Metric[Keys](
    name="dosage",
    summary="Session length and weekly minutes per student",
    definition=(
        "Session *length* = `session.completed` time − `session.matched` time, to the "
        "microsecond, in minutes; only sessions matched and then completed (as of the "
        "position) have one. `sessions_completed`, `students_served` (distinct students with "
        "a completed session), `minutes` (sum of lengths), `minutes_per_student` = minutes ÷ "
        "students_served, `length_mean`, and nearest-rank `length_p50`/`p90`/`p99` (the "
        "⌈P·n/100⌉-th smallest length, as for wait times) and `length_max`; null without a "
        "completed session. `rows`: one per ISO week (of the request's local date) from the "
        "week of `from` (else the first week with a completed session) to the week of `to` "
        "(else the last), zeros included: `active_students` (distinct students with a "
        "completed session that week), `minutes`, and `students_meeting_target` (students "
        "whose minutes that week reach `target_minutes`, the district's "
        "`dosage_target_minutes`, default 60). Example: a student with sessions of 25 and 40 "
        "minutes requested in 2026-W44 adds 65 minutes to that week and meets a 60-minute "
        "target."
    ),
    response=ms.Dosage,
    compute=_dosage,
    planner=by_group.plan_dosage,
    group_by=(),
    csv_rows=by_group.grouped_csv(ms.DosageGroup),
    grouping=by_group.grouping_text(
        "`sessions_completed`, `students_served`, `minutes`, `minutes_per_student`, "
        "`length_mean`, `length_p50`/`p90`/`p99` and `length_max` (no weekly rows)"
    ),
)
EQUITY_GAPS = Metric[Keys](
    name="equity-gaps",
    summary="Equity gaps: each roster group against the rest of the district",
    definition=(
        "Over the students of the district's latest roster-group import at or before the "
        "position (`tutorledger import-groups`): for each recorded group and each measure, "
        "`students` (the group's rostered students), `count` (of those, the students the "
        "measure counts), `rate` = count ÷ students, the same for the rest of the rostered "
        "district (`rest_*`: rostered students not in the group), `difference` = rate − "
        "rest_rate and its 95 % interval (`ci_low`, `ci_high`: Newcombe's hybrid score "
        "interval, from the two Wilson intervals). Measures: `reach` (at least one request "
        "in the range), `regular_use` (requests in at least 3 distinct ISO weeks of the "
        "range, as engagement's `regular_students`), `dosage_standard` (met the district's "
        "dosage standard over the range, as the `dosage-standard` metric's `met`; its "
        "filters choose the completed sessions). Students who made requests but are not "
        "in the roster count nowhere. Filters choose which requests count (a school's, a "
        "subject's, a cohort's members'…); the students compared are always the roster's. "
        "Example: 480 of 6,000 English learners "
        "and 5,520 of the other 46,000 students were reached → rates 0.08 and 0.12, "
        "difference −0.04, interval about −0.047 to −0.032: behind, and not by chance."
    ),
    response=EquityGaps,
    compute=_equity,
    planner=plan_equity,
    figures=(),
)
DOSAGE_STANDARD = Metric[Keys](
    name="dosage-standard",
    summary="Students meeting the district's high-dosage standard: met, on track, short",
    definition=(
        "The district's standard (`dosage_standard` in `TUTORLEDGER_DISTRICTS_FILE`; default "
        "3 sessions a week of at least 30 minutes, for 10 weeks). Weeks are local ISO weeks "
        "(Monday-Sunday) of each completed session's request date; a session's length is "
        "`session.completed` − `session.matched` time, as for `dosage`. Weeks judged: from "
        "the week of `from` (else the first week with a completed session) to the week of "
        "`to` (else the last). A week *counts* when it has a school day: a weekday of the "
        "district's `school_hours.days` outside every `dosage_standard.breaks` range; weeks "
        "without one are neither met nor missed. A counted week is *met* by a student with at "
        "least `sessions_per_week` completed sessions of at least `session_minutes` (exactly "
        "30 minutes counts) in it. Per row: `students` (distinct students with a completed "
        "session), `met` (at least `weeks` met weeks, consecutive or not), `on_track` (not "
        "met, but every counted week from their first week with a completed session to the "
        "last week judged was met) and `short` (the rest). `weeks`: every week judged with "
        "its `school_days`, `active_students` and `students_meeting_week` (ungrouped). A row "
        "grouped by school, subject, grade or cohort equals the metric filtered to it. "
        "Example: a student with 3 sessions of 30, 45 and 31 minutes in each of the 4 weeks "
        "since their first, with a fifth week a spring break, is on track (4 met weeks of "
        "10); a student with 2 such sessions in one of those weeks falls short."
    ),
    response=standard.DosageStandardOut,
    compute=standard.compute,
    planner=standard.plan_dosage_standard,
    group_by=(),
    options=standard.standard_grouping,
    grouping=standard.GROUPING,
)
OUTCOMES = Metric[Terms](
    name="outcomes",
    summary="Usage vs grades: grade change between two terms by usage band",
    definition=f"""
Change in grade (0–100 scale) between `term_from` and `term_to` in one subject, by usage band.

- **Students**: those with a grade in `subject` for both terms (the latest grade recorded for
  each term as of the position); with `cohort_id`, only the cohort's members at the position.
- **Usage**: the student's *completed* sessions in `subject` requested on a local date in the
  window: after `term_from`'s grading date, up to and including `term_to`'s (each term's
  grading date is the `term_end` declared when its grades were imported; `window_start` and
  `window_end` echo the dates used). Bands: `none` (0), `1-2`, `3-9`, `10+`.
- **Figures** per band: `students`, `mean_from`, `mean_to`, `mean_change` (mean of each
  student's later grade minus earlier). Dashboard keys see bands under the district's
  suppression threshold withheld, with complementary suppression across the bands.

Example: a student graded 70 in 2025-fall (graded 2025-12-19) and 78 in 2026-spring (graded
2026-05-29) with 4 completed algebra sessions requested between 2025-12-20 and 2026-05-29
adds 8 to the `3-9` band's mean change.

**{INTERPRETATION}**
""",
    response=Outcomes,
    compute=_outcomes,
    planner=plans.plan_outcomes,
    options=outcome_terms,
    filters=False,
    figures=(),
    not_found="Unknown cohort, or a term with no grades",
)

# The metrics that take the shared filters (and answer with their defaults alone: the replay
# of every metric reads these); METRICS is every metric, in the order the API lists them.
WITH_FILTERS: tuple[Metric[Keys], ...] = (
    PARTICIPATION, DEMAND, WAIT_TIMES, SATISFACTION, TIMING, ENGAGEMENT, DOSAGE, DOSAGE_STANDARD,
)  # fmt: skip
EVERY: tuple[Metric[Any], ...] = (*WITH_FILTERS, EQUITY_GAPS, OUTCOMES)
METRICS: dict[str, Metric[Any]] = {m.name: m for m in EVERY}
