"""Reading an uploaded cohort file: a CSV of student ids, checked whole before anything is
recorded (one bad line refuses the file, named by its line number, never by its content).

Accepted: one student id per line, or a column named `student_id` among others; a header line
is optional; blank lines are ignored; duplicates count once (as in the API's PUT).
"""

from __future__ import annotations

import csv
import io
import re

from tutorledger.domain.cohort import MAX_MEMBERS
from tutorledger.domain.envelope import SESSION_PATTERN
from tutorledger.domain.errors import InvalidRequest

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # 200,000 ids of up to 24 characters, with room
MAX_IDS = MAX_MEMBERS
HEADER = "student_id"
_STUDENT_ID = re.compile(SESSION_PATTERN)


class UploadTooLarge(InvalidRequest):
    code = "upload_too_large"
    status = 413


def too_large() -> UploadTooLarge:
    return UploadTooLarge(f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")


def _bad_line(line: int, why: str) -> InvalidRequest:
    return InvalidRequest(f"line {line}: {why}; nothing was recorded", {"line": line})


def student_ids(data: bytes) -> list[str]:
    """The file's student ids in file order, or InvalidRequest naming the first bad line."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise too_large()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("the file is not UTF-8 text; nothing was recorded") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    column: int | None = None
    first = True
    ids: list[str] = []
    line = 1  # where the next row starts (a quoted cell may span lines)
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            at, line = line, reader.line_num + 1
            if not any(cells):
                continue
            if first:
                first = False
                names = [c.lower() for c in cells]
                if HEADER in names:
                    column = names.index(HEADER)
                    continue
            ids.append(_one_id(cells, column, at))
            if len(ids) > MAX_IDS:
                raise InvalidRequest(f"more than {MAX_IDS:,} student ids; nothing was recorded")
    except csv.Error:
        raise _bad_line(line, "not readable as CSV") from None
    if not ids:
        raise InvalidRequest("the file holds no student id; nothing was recorded")
    return ids


def _one_id(cells: list[str], column: int | None, line: int) -> str:
    if column is None and len(cells) != 1:
        raise _bad_line(line, f"{len(cells)} columns but no '{HEADER}' header line")
    value = cells[column or 0] if column is None or column < len(cells) else ""
    if not _STUDENT_ID.match(value):
        raise _bad_line(line, "not a student id (1 to 128 of A-Z a-z 0-9 _ . : -)")
    return value
