"""Provenance: who put an event in the ledger, kept in its chained record.

Every event accepted through `POST /v1/events` names the emitter key that posted it (its id,
a prefix of the key's SHA-256, never the key) and that key's provider; every event recorded
by `import-sessions` names the import instead: the provider and the SHA-256 of the source
file. The record lives in the stored event as a top-level `provenance` object, so the chain
hash (taken over the stored event) covers it: editing it breaks `verify` at that position.

Record format: the chain rule is unchanged (`sha256(prev ‖ canonical stored event with its
position)`); a record either has `provenance` (format 1, below) or does not (events stored
before provenance existed, and school, roster, cohort, grade and erasure events). A ledger
therefore needs no migration, and a verifier of either release checks both kinds. `format`
names the shape so a later one can be told apart without guessing from its fields.

The emitter's idempotency digest is taken over its own body only: re-sending an event
through another key is still a duplicate, and the stored record keeps the first sender.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from tutorledger.domain.envelope import DISTRICT_PATTERN, _Strict

PROVENANCE_FIELD = "provenance"
PROVIDER_PATTERN = DISTRICT_PATTERN  # 1-64 of [A-Za-z0-9_.-]: safe in a query, a CSV, a path
ProviderId = Annotated[str, Field(pattern=PROVIDER_PATTERN)]
KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{8,64}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Provenance(_Strict):
    """Format 1: `via: "api"` with the emitter key's id (and its provider, when the key
    names one), or `via: "import"` with the provider and the source file's SHA-256."""

    format: Literal[1] = 1  # the record's shape; a later shape gets the next number
    via: Literal["api", "import"]
    provider: ProviderId | None = None
    key_id: KeyId | None = None
    source_sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _complete(self) -> Provenance:
        if self.via == "api" and (self.key_id is None or self.source_sha256 is not None):
            raise ValueError("an api provenance names the key_id and no source file")
        if self.via == "import" and (
            self.provider is None or self.source_sha256 is None or self.key_id is not None
        ):
            raise ValueError("an import provenance names the provider and source_sha256")
        return self

    def record(self) -> dict[str, Any]:
        """The JSON object stored (and chained) in each event (absent fields omitted)."""
        body: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        return body


def by_key(key_id: str, provider: str | None) -> Provenance:
    """Provenance of an event posted with an API key."""
    return Provenance(via="api", key_id=key_id, provider=provider)


def by_import(provider: str, source_sha256: str) -> Provenance:
    """Provenance of an event recorded by `import-sessions` from one source file."""
    return Provenance(via="import", provider=provider, source_sha256=source_sha256)


def provenance_of(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored event's provenance record ({} when it has none)."""
    found = stored.get(PROVENANCE_FIELD)
    return found if isinstance(found, dict) else {}
