"""A vendor's session report written from synthetic ledger events, in the shape of the shipped
Tutor.com-style mapping (`infra/importers/mappings/tutorcom.toml`): one row per session, local times
without an offset. Used by the tests and the benchmark; no vendor data is involved.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

COLUMNS = (
    "Session ID", "Student ID", "School Code", "Grade", "Subject", "Topic", "Request Time",
    "Start Time", "Tutor ID", "End Time", "End Reason", "Resolution", "Survey Time",
    "Was This Session Helpful", "Rating", "Comments",
)  # fmt: skip
REASONS = {"student_left": "Student left", "no_tutor_available": "No tutor available",
           "timeout": "Timed out", "other": "Other"}  # fmt: skip
OUTCOMES = {"resolved": "Resolved", "partial": "Partially resolved", "unresolved": "Unresolved"}


def _local(occurred_at: str, zone: ZoneInfo) -> str:
    at = datetime.fromisoformat(occurred_at).astimezone(zone).replace(tzinfo=None)
    return at.isoformat(sep=" ")


def session_rows(events: Iterable[dict[str, Any]], time_zone: str) -> list[dict[str, str]]:
    """One report row per session, in the order sessions were first requested."""
    zone = ZoneInfo(time_zone)
    rows: dict[str, dict[str, str]] = {}
    for e in events:
        p, at = e["payload"], _local(e["occurred_at"], zone)
        if e["type"] == "session.requested":
            rows[e["session_id"]] = dict.fromkeys(COLUMNS, "") | {
                "Session ID": e["session_id"], "Student ID": p["student_id"],
                "School Code": p["school_id"], "Grade": "K" if p["grade"] == 0 else str(p["grade"]),
                "Subject": p["subject"].replace("-", " ").title(), "Topic": p.get("topic", ""),
                "Request Time": at,
            }  # fmt: skip
            continue
        row = rows[e["session_id"]]
        if e["type"] == "session.matched":
            row |= {"Start Time": at, "Tutor ID": p["tutor_id"]}
        elif e["type"] == "session.completed":
            row |= {"End Time": at, "End Reason": "Completed",
                    "Resolution": OUTCOMES.get(p.get("outcome", ""), "")}  # fmt: skip
        elif e["type"] == "session.cancelled":
            row |= {"End Time": at, "End Reason": REASONS[p["reason"]]}
        elif e["type"] == "session.surveyed":
            row |= {"Survey Time": at, "Was This Session Helpful": "Yes" if p["helped"] else "No",
                    "Rating": str(p["rating"]), "Comments": p.get("comment", "")}  # fmt: skip
    return list(rows.values())


def write_report(path: Path, events: Iterable[dict[str, Any]], time_zone: str) -> int:
    """Write the report as CSV; returns its number of rows."""
    rows = session_rows(events, time_zone)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
