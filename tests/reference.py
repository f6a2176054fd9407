"""Independent pure-Python figures from known-valid events, to check what the system reports."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo


def sessions_of(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Fold valid events into per-session records (first event of each kind wins)."""
    sessions: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        key = (e["district_id"], e["session_id"])
        kind = e["type"].removeprefix("session.")
        if kind == "requested":
            sessions.setdefault(key, {"request": e["payload"], "steps": {}})
            sessions[key]["steps"].setdefault("requested", e["occurred_at"])
        elif key in sessions:
            sessions[key]["steps"].setdefault(kind, e["occurred_at"])
    return sessions


def participation(
    events: list[dict[str, Any]],
    schools: list[dict[str, Any]],
    district_id: str,
    tz: str = "America/New_York",
    school_id: str | None = None,
    grade: int | None = None,
    subject: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> dict[str, Any]:
    zone = ZoneInfo(tz)
    chosen = []
    for (district, _), s in sessions_of(events).items():
        req = s["request"]
        day = datetime.fromisoformat(s["steps"]["requested"]).astimezone(zone).date()
        if district != district_id:
            continue
        if school_id and req["school_id"] != school_id:
            continue
        if grade is not None and req["grade"] != grade:
            continue
        if subject and req["subject"] != subject:
            continue
        if (date_from and day < date_from) or (date_to and day > date_to):
            continue
        chosen.append(s)
    served = len({student_of(s["request"]) for s in chosen})
    enrolled = 0
    for school in schools:
        if school_id and school["school_id"] != school_id:
            continue
        if date_to and school["as_of"] > date_to:
            continue
        counts = school["enrollment"]
        enrolled += counts.get(str(grade), 0) if grade is not None else sum(counts.values())
    requested = len(chosen)
    return {
        "enrolled": enrolled,
        "students_served": served,
        "reach_rate": served / enrolled if enrolled else None,
        "sessions_requested": requested,
        "sessions_matched": sum("matched" in s["steps"] for s in chosen),
        "sessions_completed": sum("completed" in s["steps"] for s in chosen),
        "sessions_cancelled": sum("cancelled" in s["steps"] for s in chosen),
        "sessions_per_served_student": requested / served if served else None,
    }


def student_of(request: dict[str, Any]) -> str:
    """The student of a request payload: the id as sent, or the token once stored/published."""
    return str(request.get("student_id") or request["student_token"])
