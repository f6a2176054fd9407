"""The text every metric's OpenAPI description ends with (COMMON, and GROUPING for metrics
that take `group_by`); each definition is in its entry in api/metrics/registry.py."""

from __future__ import annotations

COMMON = """

**Filters** (all metrics): `district_id` (required), `school_id`, `subject`, `grade` (0-12),
`cohort_id`, `group` (a roster group's code, e.g. `ell`: only its members as of the position),
`provider` (sessions whose request names that provider),
`from`/`to` (inclusive dates in the district's time zone: a session belongs to the local day
it was *requested*, whatever day it was matched, completed or surveyed), `as_of_position`
(only ledger events at positions ≤ it count: the report as it was then). The response names
`as_of_position` and the chain `head_hash` used. `from` after `to`, a malformed date or
`grade` outside 0-12 → 422 `invalid_request`. `?format=csv` or `Accept: text/csv` returns the
same rows as CSV, each with `as_of_position` and `head_hash` columns."""

GROUPING = """

**group_by**: `school`, `subject`, `group` (roster groups) or a comma list of them (e.g.
`school,subject`, `group,school`), or `provider` alone or with one of those (e.g.
`school,provider`: every school's and every provider's total is published by another
grouping, and dashboard keys never see one withheld cell alone in a school's or a provider's
line); anything else → 422. Rows are sorted
by their group values; only groups with at least one request appear. Without grouping there is
exactly one row, with `school_id`/`subject`/`student_group`/`provider` null. By `group`, a
student in several roster groups counts in each, and `margins` holds the same rows without the
group split. A session's provider is its request's (the emitter key's or the import's, `''` for
sessions recorded without provenance); demand's `share` and `lift` ignore the provider: a
row's are those of its school and subject (else the filters' scope)."""
