"""Schema evolution: published events are never edited; older versions are upcast on read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tutorledger.domain.envelope import SCHEMA_VERSION
from tutorledger.domain.errors import InvalidEvent

# UPCASTERS[n] turns a version-n envelope into version n+1. Version 1 is current: none yet.
UPCASTERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upcast(envelope: dict[str, Any]) -> dict[str, Any]:
    """Bring an envelope to the current schema version, or say why it cannot be."""
    version = envelope.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidEvent("schema_version missing or not an integer")
    while version < SCHEMA_VERSION:
        step = UPCASTERS.get(version)
        if step is None:
            raise InvalidEvent(f"no upcaster from schema_version {version}")
        envelope = step(envelope)
        version = envelope["schema_version"]
    if version != SCHEMA_VERSION:
        raise InvalidEvent(
            f"unsupported schema_version {version} (this build reads {SCHEMA_VERSION})"
        )
    return envelope
