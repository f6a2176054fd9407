"""Withheld figures, told apart from missing ones.

The API answers a withheld figure (small-cell suppression) and a figure that does not exist
(a rate over zero, a percentile of nothing) alike: null. A page must not: a program lead
reads "no data" and "hidden to protect students" differently. The exact answer and the
answer the caller may see are compared: a value present in the first and null in the
second was withheld, and the page gets the WITHHELD marker in its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel


class _Withheld:
    """The one marker of a withheld figure (falsy, so `or` defaults still read as unknown)."""

    def __repr__(self) -> str:
        return "WITHHELD"

    def __bool__(self) -> bool:
        return False


WITHHELD: Final = _Withheld()
MARK = "⊘"  # distinct from "—" (no data) in every font the page may fall back to


def marked(exact: Any, shown: Any) -> Any:
    """`shown` (plain data) with WITHHELD wherever `exact` has a value and `shown` has none."""
    if isinstance(shown, dict):
        source = exact if isinstance(exact, dict) else {}
        return {k: marked(source.get(k), v) for k, v in shown.items()}
    if isinstance(shown, list):
        items = exact if isinstance(exact, list) and len(exact) == len(shown) else []
        return [marked(items[i] if items else None, v) for i, v in enumerate(shown)]
    return WITHHELD if shown is None and exact is not None else shown


def is_withheld(value: Any) -> bool:
    return value is WITHHELD


@dataclass(frozen=True)
class Shown:
    """One answer three ways: `model` as the caller may see it (withheld figures null: what
    the API and the CSV give), `view`, the same as plain data with withheld figures marked,
    and `exact`, for what other figures are computed from (never shown as such)."""

    model: BaseModel
    view: dict[str, Any]
    exact: BaseModel

    @classmethod
    def of(cls, exact: BaseModel, shown: BaseModel) -> Shown:
        view = marked(exact.model_dump(mode="python"), shown.model_dump(mode="python"))
        return cls(shown, view, exact)
