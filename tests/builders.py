"""Builders the test modules share: raw envelopes, API keys files, chain recomputation.

Imported by plain name (`from builders import envelope`), like `reference`: tests/ is on
sys.path through tests/conftest.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tutorledger.infra.eventstore.store import GENESIS_HASH

# The participation figures the API reports, in its order.
FIGURES = (
    "enrolled",
    "students_served",
    "reach_rate",
    "sessions_requested",
    "sessions_matched",
    "sessions_completed",
    "sessions_cancelled",
    "sessions_per_served_student",
)


def envelope(
    district: str,
    session: str,
    kind: str,
    occurred_at: str,
    payload: Any,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A raw `session.<kind>` envelope, schema 1; a fresh event id unless one is given."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": f"session.{kind}",
        "schema_version": 1,
        "district_id": district,
        "session_id": session,
        "occurred_at": occurred_at,
        "payload": payload,
    }


def at_minute(
    district: str, session: str, kind: str, minute: int, **payload: Any
) -> dict[str, Any]:
    """An envelope at 2026-03-02 15:<minute> UTC, the payload given as keywords."""
    return envelope(district, session, kind, f"2026-03-02T15:{minute:02d}:00+00:00", payload)


def write_keys(path: Path, specs: Iterable[Mapping[str, Any]]) -> Path:
    """An API keys file holding `specs` (as JSON); returns its path."""
    path.write_text(json.dumps(list(specs)))
    return path


def role_keys(keys: Mapping[str, str], limited_district: str) -> list[dict[str, Any]]:
    """One spec per named key: the role is the name without `_limited`, and a `_limited` key
    sees only `limited_district` (the others see every district)."""
    return [
        {
            "key": key,
            "role": name.removesuffix("_limited"),
            "districts": [limited_district] if name.endswith("_limited") else ["*"],
        }
        for name, key in keys.items()
    ]


def recompute_chain(
    mapper: Any,
    rows: Iterable[tuple[int, str, str, Any]],
    step: Callable[[str, int, dict[str, Any]], str],
    district: str | None = None,
) -> tuple[list[int], str]:
    """Walk `chained_events` rows from genesis with `step`, asserting every stored hash (and,
    given `district`, that each row and its envelope belong to it); returns (positions, head)."""
    prev, positions = GENESIS_HASH, []
    for position, district_id, stored_hash, stored in rows:
        event = mapper.to_domain_event(stored).envelope
        if district is not None:
            assert district_id == district
            assert event["district_id"] == district
        prev = step(prev, position, event)
        assert stored_hash == prev, f"chain broken at position {position}"
        positions.append(position)
    return positions, prev


def exact(body: Any) -> Any:
    """A metrics answer given to an exact-figures key: nothing withheld; the `suppressed`
    flags (all false) dropped so it compares with reference figures."""
    if isinstance(body, dict):
        assert body.pop("suppressed", False) is False, body
        return {k: exact(v) for k, v in body.items()}
    if isinstance(body, list):
        return [exact(v) for v in body]
    return body


def post_all(client: TestClient, events: list[dict[str, Any]], headers: dict[str, str]) -> int:
    """Post events in batches of 1000, each accepted (or a duplicate); the last position."""
    position = 0
    for i in range(0, len(events), 1000):
        response = client.post("/v1/events", json={"events": events[i : i + 1000]},
                               headers=headers)  # fmt: skip
        assert response.status_code == 200, response.text
        assert {r["status"] for r in response.json()["results"]} <= {"accepted", "duplicate"}
        position = response.json()["position"]
    return position
