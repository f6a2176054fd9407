"""Query dates are YYYY-MM-DD text only: numeric text would otherwise pass as epoch seconds."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import TypeAdapter, ValidationError

from tutorledger.api.http.bounds import BoundedDate

ADAPTER: TypeAdapter[date] = TypeAdapter(BoundedDate)


@pytest.mark.parametrize("text", ["0", "1700000000", "20260105", "2026-1-5", " 2026-01-05", ""])
def test_anything_but_iso_date_text_is_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        ADAPTER.validate_python(text)


def test_iso_dates_in_range_pass_and_out_of_range_do_not() -> None:
    assert ADAPTER.validate_python("2026-01-05") == date(2026, 1, 5)
    assert ADAPTER.validate_python(date(1970, 1, 1)) == date(1970, 1, 1)
    with pytest.raises(ValidationError, match="between"):
        ADAPTER.validate_python("1969-12-31")
