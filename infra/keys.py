"""API keys from the JSON file named by TUTORLEDGER_API_KEYS_FILE (docs/contract.md §2)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

log = logging.getLogger(__name__)
Role = Literal["emitter", "dashboard", "auditor", "admin"]
Capability = Literal["emit", "read_metrics", "read_sessions", "admin"]

KEY_ID_CHARS = 16
GRANTS: dict[Role, frozenset[Capability]] = {
    "emitter": frozenset({"emit"}),
    "dashboard": frozenset({"read_metrics"}),
    "auditor": frozenset({"read_metrics", "read_sessions"}),
    "admin": frozenset({"emit", "read_metrics", "read_sessions", "admin"}),
}


class KeySpec(BaseModel):
    """One entry of the keys file: a plain key or its sha256, a role and its districts."""

    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(default=None, min_length=16)
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    role: Role
    districts: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_secret(self) -> KeySpec:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of 'key' or 'key_sha256'")
        return self

    def digest(self) -> str:
        if self.key_sha256 is not None:
            return self.key_sha256
        assert self.key is not None
        return hashlib.sha256(self.key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role limited to districts ('*' = all)."""

    role: Role
    districts: frozenset[str]
    key_id: str = ""  # a prefix of the key's SHA-256: names it in logs, safely

    def can(self, capability: Capability) -> bool:
        return capability in GRANTS[self.role]

    def covers(self, district_id: str) -> bool:
        return "*" in self.districts or district_id in self.districts


class KeyStore:
    """Looks keys up by sha256 so plain keys never need to sit in memory longer than a request."""

    def __init__(self, specs: list[KeySpec]) -> None:
        self._by_digest = {
            s.digest(): Principal(s.role, frozenset(s.districts), s.digest()[:KEY_ID_CHARS])
            for s in specs
        }
        self._plain = sum(1 for s in specs if s.key is not None)

    @classmethod
    def from_file(cls, path: Path) -> KeyStore:
        specs = TypeAdapter(list[KeySpec]).validate_json(path.read_bytes())
        store = cls(specs)
        if store.plain_keys:
            log.warning(
                "API keys file holds plain keys; store key_sha256 instead",
                extra={"keys_file": str(path), "plain_keys": store.plain_keys},
            )
        return store

    @property
    def plain_keys(self) -> int:
        """Entries given as plain `key`, not `key_sha256` (a leaked file then leaks keys)."""
        return self._plain

    def authenticate(self, token: str) -> Principal | None:
        return self.by_digest(key_digest(token))

    def by_digest(self, digest: str) -> Principal | None:
        """The principal of a key known by its sha256 (a dashboard session holds that).

        Compared with every known digest in constant time, without stopping at a match, so
        the time taken says nothing about which key (if any) matched."""
        found: Principal | None = None
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def key_digest(token: str) -> str:
    """Hex sha256 of a key: how the keys file and dashboard sessions name it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def write_admin_keys_file(path: Path) -> str:
    """Create a keys file holding one fresh admin key (stored hashed); returns the key."""
    key = "tl_" + secrets.token_urlsafe(32)
    spec = {
        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
        "role": "admin",
        "districts": ["*"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([spec], indent=2) + "\n")
    path.chmod(0o600)
    return key
