"""Schemathesis hooks: teach the generator what JSON Schema cannot state.

`from` must not be after `to` (both are documented; the API answers 422 otherwise, which a
unit test checks). Generated pairs in the wrong order are swapped, not dropped.

The roster upload is `application/zip`, which schemathesis cannot generate on its own.
"""

from __future__ import annotations

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


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if query and isinstance(query.get("from"), str) and isinstance(query.get("to"), str):
        if query["from"] > query["to"]:
            query["from"], query["to"] = query["to"], query["from"]
    return query
