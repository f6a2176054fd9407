"""API keys from the JSON file named by TUTORLEDGER_API_KEYS_FILE (docs/contract.md §2).

The file is read again when it changes (checked at most once a second, on the request that
asks), so a removed or revoked key stops working within seconds and without a restart. A
reload is all or nothing: the whole file is parsed and checked, then swapped in; a file that
does not parse (half-written, or wrong) leaves the keys in force and logs one line naming
the entry and field at fault, never a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

log = logging.getLogger(__name__)
Role = Literal["emitter", "dashboard", "auditor", "admin"]
Capability = Literal["emit", "read_metrics", "read_sessions", "admin"]

KEY_ID_CHARS = 16
RECHECK_SECONDS = 1.0  # how often a request may look at the keys file for a change
GRANTS: dict[Role, frozenset[Capability]] = {
    "emitter": frozenset({"emit"}),
    "dashboard": frozenset({"read_metrics"}),
    "auditor": frozenset({"read_metrics", "read_sessions"}),
    "admin": frozenset({"emit", "read_metrics", "read_sessions", "admin"}),
}


class KeySpec(BaseModel):
    """One entry of the keys file: a plain key or its sha256, a role and its districts;
    `revoked: true` or a past `expires_at` turns the key away without deleting the entry."""

    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(default=None, min_length=16)
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    role: Role
    districts: list[str] = Field(min_length=1)
    provider: str | None = None  # an emitter's programme/vendor: named in each event it posts
    revoked: bool = False
    expires_at: AwareDatetime | None = None

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


_SPECS = TypeAdapter(list[KeySpec])


class KeysFileError(ValueError):
    """A keys file that cannot be used. The message names the entry and field, never a
    value: the value at fault may be the key itself."""

    code = "invalid_keys_file"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role limited to districts ('*' = all)."""

    role: Role
    districts: frozenset[str]
    key_id: str = ""  # a prefix of the key's SHA-256: names it in logs, safely
    provider: str | None = None  # the key's provider (emitters): chained in what it posts

    def can(self, capability: Capability) -> bool:
        return capability in GRANTS[self.role]

    def covers(self, district_id: str) -> bool:
        return "*" in self.districts or district_id in self.districts


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    expires_at: datetime | None

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


class _KeySet:
    """One parsed keys file, never changed once built (a reload builds a new one)."""

    def __init__(self, specs: list[KeySpec]) -> None:
        revoked = {s.digest() for s in specs if s.revoked}
        self.by_digest = {
            s.digest(): _Entry(
                Principal(s.role, frozenset(s.districts), s.digest()[:KEY_ID_CHARS], s.provider),
                s.expires_at,
            )
            for s in specs
            if s.digest() not in revoked
        }
        self.plain = sum(1 for s in specs if s.key is not None)


@dataclass(frozen=True)
class _Stamp:
    """What says the file changed: its identity, size and times (cheap: one stat)."""

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> _Stamp | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class KeyStore:
    """Looks keys up by sha256 so plain keys never need to sit in memory longer than a request.

    Built from a file, it follows the file: see the module docstring."""

    def __init__(
        self, specs: list[KeySpec], path: Path | None = None, recheck: float = RECHECK_SECONDS
    ) -> None:
        self._keys = _KeySet(specs)
        self._path = path
        self._recheck = recheck
        self._stamp = _Stamp.of(path) if path is not None else None
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        # Told the key id of each successful authentication (the server notes last use).
        self.on_use: Callable[[str], None] | None = None

    @classmethod
    def from_file(cls, path: Path, recheck: float = RECHECK_SECONDS) -> KeyStore:
        """Read the keys file; KeysFileError (one line, no key in it) if it cannot be used."""
        stamp = _Stamp.of(path)
        store = cls(read_specs(path), path, recheck)
        store._stamp = stamp  # the file as it was before reading: a later change shows
        store._warn_plain()
        return store

    def _warn_plain(self) -> None:
        if self._keys.plain:
            log.warning(
                "API keys file holds plain keys; store key_sha256 instead",
                extra={"keys_file": str(self._path), "plain_keys": self._keys.plain},
            )

    @property
    def plain_keys(self) -> int:
        """Entries given as plain `key`, not `key_sha256` (a leaked file then leaks keys)."""
        return self._keys.plain

    def refresh(self, force: bool = False) -> bool:
        """Read the file again if it changed (at most once per recheck interval unless
        forced); True when new keys were swapped in. Requests never wait on one another:
        one that finds a reload under way uses the keys in force."""
        if self._path is None:
            return False
        now = time.monotonic()
        if not force and now - self._checked < self._recheck:
            return False
        if not self._lock.acquire(blocking=force):
            return False
        try:
            self._checked = now
            stamp = _Stamp.of(self._path)
            if stamp is None or stamp == self._stamp:
                return False  # a missing file (mid-rename) keeps the keys in force
            self._stamp = stamp  # taken before reading: a write during the read shows later
            return self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> bool:
        assert self._path is not None
        try:
            specs = read_specs(self._path)
        except KeysFileError as exc:
            log.error("keys file not reloaded; the keys in force are kept: %s", exc)
            return False
        self._keys = _KeySet(specs)
        log.info("keys file reloaded", extra={"keys_file": str(self._path), "keys": len(specs)})
        self._warn_plain()
        return True

    def authenticate(self, token: str) -> Principal | None:
        return self.by_digest(key_digest(token))

    def by_digest(self, digest: str) -> Principal | None:
        """The principal of a key known by its sha256 (a dashboard session holds that).

        Compared with every known digest in constant time, without stopping at a match, so
        the time taken says nothing about which key (if any) matched."""
        self.refresh()
        keys = self._keys
        now = datetime.now(UTC)
        found: Principal | None = None
        for known, entry in keys.by_digest.items():
            if hmac.compare_digest(known, digest) and entry.live(now):
                found = entry.principal
        if found is not None and self.on_use is not None:
            self.on_use(found.key_id)
        return found


def read_specs(path: Path) -> list[KeySpec]:
    """Parse and check the whole keys file, or raise KeysFileError naming entry and field."""
    try:
        raw = json.loads(path.read_bytes())
    except OSError as exc:
        raise KeysFileError(f"keys file {path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise KeysFileError(f"keys file {path}: not JSON ({exc.msg} at {where})") from None
    except ValueError:  # not UTF-8
        raise KeysFileError(f"keys file {path}: not UTF-8 JSON") from None
    try:
        return _SPECS.validate_python(raw)
    except ValidationError as exc:
        raise KeysFileError(f"keys file {path}: {_first_problem(exc)}") from None


def _first_problem(exc: ValidationError) -> str:
    """The first error as 'entry N, field F: what is wrong', entries counted from 1
    (pydantic's message names the rule broken, not the input; an unknown field's name is
    not repeated: it may be a key pasted in the wrong place)."""
    error = exc.errors(include_input=False, include_url=False)[0]
    loc = list(error["loc"])
    where = f"entry {int(loc[0]) + 1}" if loc else "the file"
    if len(loc) > 1:
        field = str(loc[1])
        where += f", field '{field}'" if field in KeySpec.model_fields else ", an unknown field"
    more = exc.error_count() - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {error['msg']}{tail}"


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
