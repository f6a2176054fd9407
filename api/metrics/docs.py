"""OpenAPI descriptions of the metrics: the definitions a published figure is checked against."""

from __future__ import annotations

COMMON = """

**Filters** (all metrics): `district_id` (required), `school_id`, `subject`, `grade` (0-12),
`from`/`to` (inclusive dates in the district's time zone: a session belongs to the local day
it was *requested*, whatever day it was matched, completed or surveyed), `as_of_position`
(only ledger events at positions ≤ it count: the report as it was then). The response names
`as_of_position` and the chain `head_hash` used. `from` after `to`, a malformed date or
`grade` outside 0-12 → 422 `invalid_request`. `?format=csv` or `Accept: text/csv` returns the
same rows as CSV, each with `as_of_position` and `head_hash` columns."""

GROUPING = """

**group_by**: `school`, `subject` or `school,subject`; anything else → 422. Rows are sorted by
their group values; only groups with at least one request appear. Without grouping there is
exactly one row, with `school_id`/`subject` null."""

DOCS = {
    "participation": (
        "`students_served`: distinct students with at least one request in the range. "
        "`enrolled`: sum of each school's latest enrolment (by `as_of` date, on or before "
        "`to`), limited to the school/grade filters. `reach_rate` = served / enrolled (null "
        "when nothing is enrolled). `sessions_matched`/`completed`/`cancelled` count sessions "
        "that reached that step. CSV: one row of these figures." + COMMON
    ),
    "demand": (
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
        "given. Default `group_by`: `school,subject`." + GROUPING + COMMON
    ),
    "wait-times": (
        "Wait = `session.matched` time − `session.requested` time, to the microsecond, in "
        "seconds; only matched requests have one (including those cancelled after the match). "
        "`unmatched` = requests never matched as of the position: still waiting, or cancelled "
        "before a tutor came. `requests` = `matched` + `unmatched`.\n\n"
        "**Percentiles are nearest-rank**: pP is the ⌈P·n/100⌉-th smallest of the n waits "
        "(the smallest wait with at least P% of waits at or below it); always an observed "
        "wait, never interpolated. Example: waits 30, 40, 50, 60, 600 s (n = 5) → p50 is the "
        "⌈2.5⌉ = 3rd = 50 s; p90 the ⌈4.5⌉ = 5th = 600 s; p99 = max = 600 s. With no matched "
        "request the percentiles and `max` are null." + GROUPING + COMMON
    ),
    "satisfaction": (
        "Over the sessions requested in range, whenever their survey arrived (a late survey "
        "counts once it is in the ledger at or before the position): `surveys` (sessions "
        "surveyed), `helped` (surveys with helped = true), `helped_rate` = helped ÷ surveys, "
        "`mean_rating` = sum of ratings ÷ surveys, `survey_rate` = surveys ÷ `completed` "
        "(sessions completed). Ratios are null when their denominator is 0. Example: 10 "
        "completed, 6 surveyed with ratings 5,5,5,4,4,2 and helped 5 times → survey_rate "
        "0.6, helped_rate 0.8333…, mean_rating 4.1666…." + GROUPING + COMMON
    ),
    "timing": (
        "Requests by the district's *local* clock (its configured time zone, DST applied: "
        "on the autumn change day 01:00-01:59 happens twice and both count in hour 1; on the "
        "spring day hour 2 is empty). `rows`: all 168 (ISO weekday 1 = Monday … 7, hour 0-23) "
        "cells with `requests` and `in_school_requests`; `by_hour` and `by_weekday` sum them. "
        "A request is *in school* when its local weekday is a school day and its local time "
        "is in [start, end) of the district's school hours (default Mon-Fri 08:00-15:30; "
        "per district in `TUTORLEDGER_DISTRICTS_FILE`). `after_school_share` = requests not "
        "in school ÷ requests (evenings, early mornings, weekends). Example: a Tuesday request "
        "at 15:29:59 is in school, at 15:30:00 it is after school." + COMMON
    ),
    "engagement": (
        "Weeks are ISO weeks (Monday-Sunday) of each request's local date. `rows`: one per ISO "
        "week from the week of `from` (else the first active week) to the week of `to` (else "
        "the last), zeros included, with `weekly_active_students` (distinct students with a "
        "request in that week and in range) and `requests`. `students`: distinct students "
        "with a request in range; `regular_students`: of those, active in at least "
        "`regular_weeks` (3) distinct ISO weeks of the range; `one_time_students`: exactly one "
        "request in range. A week cut by `from`/`to` counts only its days in range. Example: "
        "a student with requests on Mon 2026-10-26, Tue 10-27 and Mon 11-02 is active in "
        "2026-W44 and 2026-W45: neither regular nor one-time." + COMMON
    ),
    "dosage": (
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
        "target." + COMMON
    ),
}
