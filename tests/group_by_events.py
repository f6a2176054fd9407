"""A generated district for the `group_by` tests: three providers (one of them `''`, sessions
recorded without one) and roster groups, as read-model rows and as the raw events the
reference fold reads."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from metric_events import district

from tutorledger.bench.metrics_latency import published
from tutorledger.domain.cohort import cohort_envelope
from tutorledger.domain.envelope import parse_envelope
from tutorledger.domain.published import parse_published
from tutorledger.projections.rows import event_row

PROVIDERS = ("vendor-a", "inhouse", "")
AT = datetime(2026, 12, 1, tzinfo=UTC)


def provider_of(session_id: str) -> str:
    return PROVIDERS[hashlib.sha256(session_id.encode()).digest()[0] % len(PROVIDERS)]


def events(district_id: str, students: int = 160) -> list[dict[str, Any]]:
    """The district's events (each once), each naming its session's provider."""
    seen: set[str] = set()
    out = []
    for e in district(district_id, students=students).events:
        if e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        provider = provider_of(e["session_id"])
        out.append({**e, "provenance": {"provider": provider} if provider else {}})
    return out


def roster(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Overlapping roster groups over the served students, one of them small."""
    served = sorted({e["payload"]["student_id"] for e in events
                     if e["type"] == "session.requested"})  # fmt: skip
    return {"ell": set(served[::4]), "econ_disadv": set(served[::2]), "foster": set(served[1:4])}


def rows(district_id: str, events: list[dict[str, Any]], groups: dict[str, set[str]]) -> list[Any]:
    """Read-model rows: the events with their provenance, then one roster import."""
    tokens: dict[str, str] = {}
    out: list[Any] = []
    for raw in events:
        body = {k: v for k, v in raw.items() if k != "provenance"}
        event = published(parse_envelope(body).canonical(), tokens)
        provider = raw["provenance"].get("provider")
        event["provenance"] = {"format": 1, "via": "api", "key_id": "0123456789abcdef",
                               **({"provider": provider} if provider else {})}  # fmt: skip
        out.append(event_row(len(out) + 1, parse_published(event)))
    everyone = set(tokens)
    for code, members in {"all": everyone, **groups}.items():
        envelope = cohort_envelope(district_id, f"roster.{code}", code,
                                   [tokens[s] for s in members], AT)  # fmt: skip
        out.append(event_row(len(out) + 1, parse_published(envelope)))
    return out
