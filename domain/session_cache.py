"""The write path's memory of sessions it recorded, so a batch need not re-read their steps.

Why: `POST /v1/events` receives a district in time order, so each batch of 1,000 events
continues hundreds of sessions earlier batches started; reading and replaying their stored
steps was a sixth of the server's time. A cached state is never trusted on its own: each
batch reads the stored version of every cached session in the same snapshot as everything
else, and a session whose version moved (another writer, another process) is dropped and
read in full. Student keys are not cached (an erasure elsewhere must be seen at once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from uuid import UUID

from tutorledger.domain.session import SessionState

DEFAULT_SIZE = 50_000  # sessions: a few tens of MB; the open sessions of a large district


class SessionCache:
    """Bounded map of session key -> its state as last stored by this process."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._states: dict[UUID, SessionState] = {}

    def __len__(self) -> int:
        return len(self._states)

    def versions(self, keys: Iterable[UUID]) -> dict[UUID, int]:
        """The cached version of each of `keys` that is cached."""
        states = self._states
        return {k: states[k].version for k in keys if k in states}

    def checkout(
        self, stored: Mapping[UUID, int], cached: Mapping[UUID, int]
    ) -> tuple[dict[UUID, SessionState], list[UUID]]:
        """Copies of the cached states whose version is still the stored one (a batch may
        change them freely), and the keys that were stale (now dropped)."""
        fresh: dict[UUID, SessionState] = {}
        stale: list[UUID] = []
        for key, version in cached.items():
            if stored.get(key, 0) == version:
                state = self._states[key]
                fresh[key] = SessionState(state.student_token, dict(state.steps), version)
            else:
                stale.append(key)
                self._states.pop(key, None)
        return fresh, stale

    def remember(self, states: Mapping[UUID, SessionState | None]) -> None:
        """Keep the states a batch has just committed (most recent last); the oldest quarter
        goes when the cache is full."""
        if self.size <= 0:
            return
        for key, state in states.items():
            if state is not None:
                self._states.pop(key, None)
                self._states[key] = state
        if len(self._states) > self.size:
            excess = len(self._states) - self.size + self.size // 4
            for key in list(self._states)[:excess]:
                del self._states[key]

    def forget(self, keys: Iterable[UUID] | None = None) -> None:
        """Drop some keys, or all (None)."""
        if keys is None:
            self._states.clear()
            return
        for key in keys:
            self._states.pop(key, None)
