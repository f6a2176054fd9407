"""A student's personal fields, and the sealed form the ledger stores instead of them.

Each (district, student) has a random data key and a random token, issued together and kept
in a key table beside the ledger, never in a chained row. A stored event carries the token in
clear and the personal fields (`student_id`, `topic`, `comment`) only as AES-GCM ciphertext
under that key, so the hash chain covers the ciphertext. Destroying the key erases the
student (crypto-shredding) while the chain, the tokens and every count stay as they were.
The cipher itself is a port: the domain says what is sealed, infra says how.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tutorledger.domain.envelope import canonical_json

# Which payload fields of each event type are a student's personal data.
PERSONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "session.requested": ("student_id", "topic"),
    "session.surveyed": ("comment",),
}
TOKEN_FIELD = "student_token"
SEALED_FIELD = "sealed"
ERASURE_EVENT_TYPE = "privacy.student_erased"
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
# Canonical JSON (keys sorted, no whitespace, UTF-8); infra may pass a faster encoder of
# the same bytes.
Encode = Callable[[Any], bytes]


class Cipher(Protocol):
    """Authenticated encryption and keyed digests under a student's data key."""

    def new_key(self) -> bytes:
        """A fresh random data key."""
        ...

    def new_token(self) -> str:
        """A fresh random token (URL-safe text, no relation to the student id)."""
        ...

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> str:
        """Encrypt and authenticate `plaintext`, bound to `aad`; text safe for JSON."""
        ...

    def open(self, key: bytes, sealed: str, aad: bytes) -> bytes:
        """Decrypt what `seal` produced; raises if it was altered or bound elsewhere."""
        ...

    def mac(self, key: bytes, data: bytes) -> bytes:
        """Keyed digest (HMAC-SHA256)."""
        ...


@dataclass(frozen=True)
class StudentKey:
    """A student's token and data key; `secret` is None once the student is erased."""

    district_id: str
    token: str
    secret: bytes | None

    @property
    def erased(self) -> bool:
        return self.secret is None


@dataclass
class KeyWrites:
    """Key-table changes that must commit in the same transaction as the events they serve."""

    issued: list[tuple[StudentKey, str]] = field(default_factory=list)  # (key, student_id)
    sessions: list[tuple[str, Any]] = field(default_factory=list)  # (token, session key)
    activity: dict[str, datetime] = field(default_factory=dict)  # token -> latest occurred_at
    erased: list[str] = field(default_factory=list)  # tokens whose key is destroyed

    def touch(self, token: str, occurred_at: datetime) -> None:
        latest = self.activity.get(token)
        if latest is None or occurred_at > latest:
            self.activity[token] = occurred_at


def _aad(envelope: Mapping[str, Any]) -> bytes:
    """Ciphertext is bound to its event: it cannot be moved to another event or district."""
    return f"{envelope['district_id']}\n{envelope['event_id']}".encode()


def has_personal(envelope: Mapping[str, Any]) -> bool:
    fields = PERSONAL_FIELDS.get(str(envelope.get("type")), ())
    return any(f in envelope["payload"] for f in fields)


def seal(
    envelope: dict[str, Any], key: StudentKey, cipher: Cipher, encode: Encode = canonical_json
) -> dict[str, Any]:
    """The stored form: personal fields replaced by the token and one ciphertext."""
    fields = PERSONAL_FIELDS.get(str(envelope["type"]), ())
    personal = {f: envelope["payload"][f] for f in fields if f in envelope["payload"]}
    if not personal:
        return envelope
    assert key.secret is not None, "cannot seal under an erased key"
    payload = {k: v for k, v in envelope["payload"].items() if k not in personal}
    payload[TOKEN_FIELD] = key.token
    payload[SEALED_FIELD] = cipher.seal(key.secret, encode(personal), _aad(envelope))
    return {**envelope, "payload": payload}


def token_of(stored: Mapping[str, Any]) -> str | None:
    token = stored.get("payload", {}).get(TOKEN_FIELD)
    return token if isinstance(token, str) else None


@dataclass(frozen=True)
class Opened:
    """A stored event read back: the emitter's envelope when the key exists; when it was
    destroyed, the personal fields are absent and `erased` names them."""

    envelope: dict[str, Any]
    erased: tuple[str, ...] = ()


def unseal(stored: dict[str, Any], key: StudentKey | None, cipher: Cipher) -> Opened:
    """Decrypt a stored event's personal fields (or report them erased)."""
    sealed = stored.get("payload", {}).get(SEALED_FIELD)
    if not isinstance(sealed, str):
        return Opened(stored)
    payload = {k: v for k, v in stored["payload"].items() if k not in (TOKEN_FIELD, SEALED_FIELD)}
    if key is None or key.secret is None:
        fields = PERSONAL_FIELDS.get(str(stored["type"]), ())
        return Opened({**stored, "payload": payload}, tuple(fields))
    personal = json.loads(cipher.open(key.secret, sealed, _aad(stored)))
    return Opened({**stored, "payload": {**payload, **personal}})


def public_form(stored: Mapping[str, Any]) -> dict[str, Any]:
    """What leaves the store (stream, projections): the token, never the ciphertext."""
    payload = stored.get("payload")
    if not isinstance(payload, dict) or SEALED_FIELD not in payload:
        return dict(stored)
    return {**stored, "payload": {k: v for k, v in payload.items() if k != SEALED_FIELD}}


def digest(
    key: StudentKey | None,
    envelope: Mapping[str, Any],
    cipher: Cipher,
    encode: Encode = canonical_json,
) -> bytes:
    """Idempotency digest of the emitter's body, keyed by the student's data key: after an
    erasure nothing is left from which a guessed student id could be confirmed."""
    assert key is not None and key.secret is not None
    return cipher.mac(key.secret, encode(envelope))
