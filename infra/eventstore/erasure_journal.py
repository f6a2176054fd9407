"""The erasure journal: every erasure, written down outside the store before it commits.

A backup holds the keys of every student live when it was taken. Restoring it must not bring
back a student erased after that moment, and the restored ledger no longer records that
erasure, so the restore needs a record kept elsewhere: this file. One JSON line per erasure
(district, token, reason code, time); tokens are random and name nobody, so the journal
holds no personal data and can be kept, copied and replicated freely. The line is appended
and synced *before* the erasure's transaction: a committed erasure is always in the
journal; a line whose transaction then failed is an erasure someone asked for, and
applying it at a restore is what they asked. Appends of one short line with O_APPEND are
atomic, so several processes (serve's workers, the CLI) may share the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JournaledErasure:
    district_id: str
    token: str
    reason: str
    at: str


class FileErasureJournal:
    """Appends erasures to a JSON-lines file (created with its folder on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, district_id: str, token: str, reason: str, at: str) -> None:
        line = json.dumps(
            {"district_id": district_id, "student_token": token, "reason": reason, "at": at},
            sort_keys=True,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


class JournalUnreadable(ValueError):
    """A line of the journal is not an erasure record."""


def read_journal(path: Path) -> list[JournaledErasure]:
    """Every erasure in the file, in order (a torn last line, from a crash mid-append, is
    skipped: its transaction had not begun)."""
    lines = path.read_text().split("\n")
    entries: list[JournaledErasure] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            entries.append(
                JournaledErasure(
                    str(raw["district_id"]),
                    str(raw["student_token"]),
                    str(raw["reason"]),
                    str(raw["at"]),
                )  # fmt: skip
            )
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines):  # the last line, without its newline: torn
                break
            raise JournalUnreadable(f"{path}:{number}: not an erasure record") from exc
    return entries
