"""Changing the keys file for `tutorledger keys`: add a key, revoke one, list them.

The server follows the file (infra/keys.py), so every change here is written the way a
reader may safely meet it: the whole new file goes to a temporary file in the same folder,
is flushed to disk (fsync), then renamed over the old one (atomic on POSIX) and the folder
is synced, so a server reloading at any instant reads the old file or the new, never half.
Two `keys` commands at once take turns on a lock file beside it, so neither loses the
other's change. The new file is checked whole before it is written: a bad file is refused
(KeysFileError, one line naming the entry and field) and left as it was.

A new key is generated here, returned once for the operator to hand over, and only its
SHA-256 is stored. Entries are kept as they were written (a `revoke` sets `revoked: true`
on the entry, it never deletes it), so the file stays the record of every key issued.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tutorledger.infra.keys import (
    _SPECS,
    KEY_ID_CHARS,
    KeysFileError,
    KeySpec,
    Role,
    _first_problem,
    key_digest,
    read_specs,
)

KEY_PREFIX = "tl_"
MIN_ID_CHARS = 8  # `keys revoke` takes the id `keys list` shows, or any unique prefix this long


@dataclass(frozen=True)
class KeyRow:
    """One entry as `keys list` shows it: never the key, only its id."""

    key_id: str
    role: str
    districts: tuple[str, ...]
    provider: str | None
    expires_at: datetime | None
    revoked: bool

    def status(self, now: datetime) -> str:
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


class KeyNotFound(KeysFileError):
    """`keys revoke` named no entry, or more than one."""

    code = "key_not_found"


def _row(spec: KeySpec) -> KeyRow:
    return KeyRow(
        spec.digest()[:KEY_ID_CHARS],
        spec.role,
        tuple(spec.districts),
        spec.provider,
        spec.expires_at,
        spec.revoked,
    )


class KeysFile:
    """The keys file at `path`, changed only whole and under its lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self) -> list[KeyRow]:
        """Every entry, in file order (KeysFileError if the file cannot be used)."""
        return [_row(s) for s in read_specs(self.path)]

    def add(
        self,
        role: Role,
        districts: list[str],
        provider: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, KeyRow]:
        """A new key (returned once, never stored) and its entry, appended to the file."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        entry: dict[str, Any] = {"key_sha256": key_digest(key), "role": role,
                                 "districts": districts}  # fmt: skip
        if provider is not None:
            entry["provider"] = provider
        if expires_at is not None:
            entry["expires_at"] = expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        with self._changing() as entries:
            entries.append(entry)
            spec = _check(entries)[-1]
        return key, _row(spec)

    def revoke(self, key_id: str) -> tuple[KeyRow, bool]:
        """Mark the entry whose id starts with `key_id` revoked; (its row, whether it was
        live until now). KeyNotFound when no entry or several match."""
        wanted = key_id.strip().lower()
        if len(wanted) < MIN_ID_CHARS:
            raise KeyNotFound(f"key id '{wanted}': give at least {MIN_ID_CHARS} characters")
        with self._changing() as entries:
            specs = _check(entries)
            hits = [i for i, s in enumerate(specs) if s.digest().startswith(wanted)]
            if len(hits) != 1:
                found = "no key" if not hits else f"{len(hits)} keys"
                raise KeyNotFound(f"key id '{wanted}': {found} in {self.path} match")
            was_live = not specs[hits[0]].revoked
            entries[hits[0]]["revoked"] = True
            spec = _check(entries)[hits[0]]
        return _row(spec), was_live

    @contextmanager
    def _changing(self) -> Iterator[list[dict[str, Any]]]:
        """The entries as written, under the lock; written back atomically on success."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._entries()
            yield entries
            _write_atomically(self.path, json.dumps(entries, indent=2) + "\n")

    def _entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        read_specs(self.path)  # refuse a bad file in its one line before changing it
        raw: list[dict[str, Any]] = json.loads(self.path.read_bytes())
        return raw


def _check(entries: list[dict[str, Any]]) -> list[KeySpec]:
    try:
        return _SPECS.validate_python(entries)
    except ValidationError as exc:
        raise KeysFileError(f"new key entry refused: {_first_problem(exc)}") from None


def _write_atomically(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename over `path`, fsync the folder."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
