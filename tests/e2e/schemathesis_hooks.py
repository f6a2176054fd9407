"""Schemathesis hooks: teach the generator what JSON Schema cannot state.

`from` must not be after `to`, and the range must not be longer than `max_range_days` (1,096
by default; an open side is measured to or from today). Both are documented; the API answers
422 otherwise, which unit tests check. Generated pairs in the wrong order are swapped and
long ranges shortened, not dropped.

The roster upload is `application/zip`, which schemathesis cannot generate on its own.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import schemathesis
from hypothesis import strategies as st
from rosters import generated_bundle

# Schema-valid bodies must be accepted (schemathesis checks that), and what makes a roster
# valid cannot be said in JSON Schema: so the generator gets real generated bundles. Bad
# bundles are the roster tests' subject (each bad row reported, nothing recorded).
ZIP_BODIES = st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.integers(min_value=0, max_value=4), min_size=2
).map(lambda per_school: generated_bundle(per_school, teachers=1).zip_bytes())
schemathesis.openapi.media_type("application/zip", ZIP_BODIES)


# Well inside the server's limit, whatever day it is in the district's zone.
LONGEST = timedelta(days=1000)


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def bounded(query: dict[str, Any]) -> None:
    """`from` ≤ `to`, at most LONGEST apart (an open side measured from today), in place."""
    start, end, today = _day(query.get("from")), _day(query.get("to")), date.today()
    if start and end and start > end:
        start, end = end, start
    if start and end and end - start > LONGEST:
        end = start + LONGEST
    elif start and not end and today - start > LONGEST:
        start = today - LONGEST
    elif end and not start and end - today > LONGEST:
        end = today + LONGEST
    for key, day in (("from", start), ("to", end)):
        if day is not None:
            query[key] = day.isoformat()


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if query:
        bounded(query)
    return query


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """The coverage phase builds its cases without `map_query` (its boundary dates, such as
    1970-01-01 alone, span 20,000 days): the same rule, just before each call."""
    if isinstance(case.query, dict):
        bounded(case.query)
