"""`group_by` for grouped metrics: a whitelist of columns, so no caller text reaches SQL."""

from __future__ import annotations

from typing import Any

from tutorledger.domain.errors import InvalidRequest
from tutorledger.projections.filters import filtered_sessions_sql

GROUPS = {"school": "school_id", "subject": "subject"}
GROUP_BY_HELP = "'school', 'subject' or 'school,subject'"


def parse_group_by(text: str | None, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """'school,subject' → ('school_id', 'subject') in a fixed order; anything else is a 422."""
    if text is None:
        return default
    names = [part.strip() for part in text.split(",")]
    if not names or any(n not in GROUPS for n in names) or len(set(names)) != len(names):
        raise InvalidRequest(f"group_by must be {GROUP_BY_HELP}", {"group_by": text})
    return tuple(column for name, column in GROUPS.items() if name in names)


def grouped_sql(select: str, keys: tuple[str, ...], where: str = "") -> str:
    """`select` aggregated over the filtered sessions, by `keys` (one row when there are none)."""
    key_list = ", ".join(keys)
    head = f"{key_list}, " if keys else ""
    tail = f" GROUP BY {key_list} ORDER BY {key_list}" if keys else ""
    condition = f" WHERE {where}" if where else ""
    return f"SELECT {head}{select} FROM ({filtered_sessions_sql()}){condition}{tail}"


def key_fields(keys: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    """The row's group columns by name; columns not grouped on are None."""
    values = dict(zip(keys, row, strict=False))
    return {column: values.get(column) for column in GROUPS.values()}
