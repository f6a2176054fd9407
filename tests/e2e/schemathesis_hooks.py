"""Schemathesis hooks: teach the generator the one rule JSON Schema cannot state.

`from` must not be after `to` (both are documented; the API answers 422 otherwise, which a
unit test checks). Generated pairs in the wrong order are swapped, not dropped.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if query and isinstance(query.get("from"), str) and isinstance(query.get("to"), str):
        if query["from"] > query["to"]:
            query["from"], query["to"] = query["to"], query["from"]
    return query
