"""CSV output of metrics, for district staff who work in spreadsheets: the JSON rows, flattened."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any, get_args

from fastapi.responses import Response
from pydantic import BaseModel

CSV_MEDIA_TYPE = "text/csv"
# Spreadsheets run a cell starting with these as a formula; ids never should be.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
Table = tuple[list[str], list[dict[str, Any]]]  # column names, rows


def wants_csv(output_format: str | None, accept: str | None) -> bool:
    """`?format=` decides; without it, an Accept header naming text/csv does."""
    if output_format is not None:
        return output_format == "csv"
    return accept is not None and CSV_MEDIA_TYPE in accept.lower()


def safe_cell(value: Any) -> Any:
    """A value as a CSV cell a spreadsheet shows as text: a leading =, +, -, @, tab or CR
    gets a quote in front, so the cell is never run as a formula (every CSV we write)."""
    return _cell(value)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return value


def _row_columns(model: BaseModel) -> list[str]:
    """Column names of the `rows` items, known even when there are no rows."""
    annotation = type(model).model_fields["rows"].annotation
    (item,) = get_args(annotation)
    return list(item.model_fields)


def table(model: BaseModel) -> Table:
    """The response's rows (or its scalar figures as one row) plus the position that made them."""
    body = model.model_dump(mode="json")
    trailer = {"as_of_position": body["as_of_position"], "head_hash": body["head_hash"]}
    if "rows" in type(model).model_fields:
        columns = _row_columns(model)
        rows = [{**row, **trailer} for row in body["rows"]]
    else:
        scalar = {k: v for k, v in body.items() if not isinstance(v, dict | list)}
        columns = [k for k in scalar if k not in trailer]
        rows = [scalar]
    return [*columns, *trailer], rows


def csv_response(
    model: BaseModel, name: str, rows_of: Callable[[BaseModel], Table] = table
) -> Response:
    """A CSV download of `rows_of(model)`; the position also travels in headers."""
    columns, rows = rows_of(model)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    body: dict[str, Any] = model.model_dump()
    filename = f"{name}-{body['district_id']}-{body['as_of_position']}.csv"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-As-Of-Position": str(body["as_of_position"]),
    }
    if body.get("head_hash"):
        headers["X-Head-Hash"] = str(body["head_hash"])
    return Response(out.getvalue(), media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8", headers=headers)
