"""Student ids tokenised at the door, for records that name students outside a session.

The same rule as ingest (domain.batch): a district's student id maps to its live token; an id
with no key yet (or whose key was destroyed) gets a fresh token and data key, written in the
same transaction as the event that names it. Nothing returned holds a student id, only a
mapping the caller drops once the event is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tutorledger.domain.batch import LedgerIndex
from tutorledger.domain.privacy import Cipher, KeyWrites, StudentKey


def tokenise(
    index: LedgerIndex,
    cipher: Cipher,
    district_id: str,
    student_ids: Sequence[str],
    at: datetime,
) -> tuple[dict[str, str], KeyWrites]:
    """(student id → token, key writes to save with the event). Every named student counts
    as active at `at`, so retention measures inactivity from the record that named them."""
    wanted = sorted(set(student_ids))
    snapshot = index.read_batch([], [], [(district_id, s) for s in wanted])
    writes = KeyWrites()
    tokens: dict[str, str] = {}
    for student_id in wanted:
        token = snapshot.tokens.get((district_id, student_id))
        key = snapshot.keys.get(token) if token is not None else None
        if key is None or key.erased:
            key = StudentKey(district_id, cipher.new_token(), cipher.new_key())
            writes.issued.append((key, student_id))
        tokens[student_id] = key.token
        writes.touch(key.token, at)
    return tokens, writes
