"""The student key table: tokens and data keys kept beside the ledger, outside chained rows.

`student_keys`: one row per (district, student): the random token, the AES data key, a
keyed lookup of the district's student id (HMAC under a per-store secret, so the table never
holds the id itself), when the student was last active and when they were erased. Erasure
sets the key and the lookup to NULL in the same transaction that appends the erasure event;
the id → token link and the means to decrypt are then gone, while the token stays (the
chained rows and every count keep it). `student_sessions` links a token to its sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tutorledger.domain.privacy import StudentKey

LOOKUP_SECRET = "student_lookup"


def lookup(pepper: bytes, district_id: str, student_id: str) -> bytes:
    """Keyed digest of a district's student id: finds the key without storing the id."""
    return hmac.new(pepper, f"{district_id}\n{student_id}".encode(), hashlib.sha256).digest()


def new_pepper() -> bytes:
    return secrets.token_bytes(32)


def key_of(row: Any) -> StudentKey:
    """(token, district_id, secret) → StudentKey."""
    secret = row[2]
    return StudentKey(row[1], row[0], None if secret is None else bytes(secret))


def activity_params(activity: dict[str, datetime]) -> list[tuple[datetime, str]]:
    return [(at, token) for token, at in activity.items()]


def chunked(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def sqlite_time(at: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order in SQLite."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
