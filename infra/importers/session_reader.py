"""Reading a session export (CSV or NDJSON) row by row, with each row's line and byte offset,
and cutting the converted events into batches that never split a row.

Byte offsets let an interrupted import resume exactly after the last recorded batch without
re-reading what came before; lines let every problem name where it is in the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from tutorledger.infra.importers.session_mapping import RowConverter, RowProblem

BATCH_EVENTS = 1000
Record = tuple[int, Mapping[str, Any] | str, int, int]  # line, row or problem, offset, last line


class SourceFormat(Protocol):
    """How a source file is written (a session mapping, or an invoice mapping, says)."""

    @property
    def format(self) -> str: ...
    @property
    def encoding(self) -> str: ...
    @property
    def delimiter(self) -> str: ...


class _Lines:
    """Decoded lines of a binary file, counting the bytes and lines handed out."""

    def __init__(self, file: IO[bytes], encoding: str, offset: int, line: int) -> None:
        self.file, self.encoding, self.offset, self.line = file, encoding, offset, line

    def __iter__(self) -> Iterator[str]:
        for raw in self.file:
            self.offset += len(raw)
            self.line += 1
            yield raw.decode(self.encoding, errors="replace")


def read_records(
    path: Path, mapping: SourceFormat, offset: int = 0, line: int = 0
) -> Iterator[Record]:
    """(first line, row or problem, byte offset after it, its last line), from `offset`."""
    with path.open("rb") as file:
        if mapping.format == "ndjson":
            file.seek(offset)
            yield from _ndjson(_Lines(file, mapping.encoding, offset, line))
        else:
            yield from _csv(file, mapping, offset, line)


def _ndjson(lines: _Lines) -> Iterator[Record]:
    for text in lines:
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError:
            row = "not a JSON object"
        if not isinstance(row, dict):
            row = "not a JSON object"
        yield lines.line, row, lines.offset, lines.line


def _csv(file: IO[bytes], mapping: SourceFormat, offset: int, line: int) -> Iterator[Record]:
    head = _Lines(file, mapping.encoding, 0, 0)
    header = [h.strip() for h in next(csv.reader(head, delimiter=mapping.delimiter), [])]
    if offset > head.offset:
        lines = _Lines(file, mapping.encoding, offset, line)
    else:
        lines = _Lines(file, mapping.encoding, head.offset, head.line)
    file.seek(lines.offset)
    reader = csv.reader(lines, delimiter=mapping.delimiter)
    while True:
        start = lines.line + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, f"unreadable CSV record: {exc}", lines.offset, lines.line
            continue
        if not values:
            continue
        if len(values) != len(header):
            problem = f"expected {len(header)} fields, found {len(values)}"
            yield start, problem, lines.offset, lines.line
        else:
            yield start, dict(zip(header, values, strict=True)), lines.offset, lines.line


@dataclass
class Batch:
    """Consecutive rows' events (≤ BATCH_EVENTS unless one row has more), with their lines."""

    events: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    rows: int = 0
    offset: int = 0  # bytes of the source consumed once this batch is recorded
    line: int = 0  # last source line consumed


def batches(
    path: Path,
    converter: RowConverter,
    offset: int = 0,
    line: int = 0,
    size: int = BATCH_EVENTS,
) -> Generator[Batch, None, None]:
    """The source's events from `offset` on, in batches cut between rows."""
    batch = Batch(offset=offset, line=line)
    for start, row, end_offset, end_line in read_records(path, converter.mapping, offset, line):
        events: list[dict[str, Any]] = []
        if isinstance(row, str):
            problems = [RowProblem(start, None, None, "invalid_row", row)]
        else:
            events, problems = converter.events(start, row)
        if batch.rows and len(batch.events) + len(events) > size:
            yield batch
            batch = Batch(offset=batch.offset, line=batch.line)
        batch.events += events
        batch.lines += [start] * len(events)
        batch.problems += problems
        batch.rows += 1
        batch.offset, batch.line = end_offset, end_line
    if batch.rows:
        yield batch
