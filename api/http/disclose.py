"""Reads of a student's personal data: a stated purpose is required, and each is recorded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Header

from tutorledger.api.runtime import Runtime
from tutorledger.domain.errors import InvalidRequest, PurposeRequired
from tutorledger.infra.eventstore.disclosures import Disclosure
from tutorledger.infra.keys import Principal

MAX_PURPOSE = 500
PURPOSE_HELP = (
    "Why you need this student's records (for example `parent request 2026-03-02` or "
    "`IEP review`). Required: the read is recorded in the disclosure log with it; without "
    "it the answer is 422 `purpose_required`."
)
PurposeHeader = Annotated[
    str | None, Header(alias="X-Purpose", description=PURPOSE_HELP, max_length=MAX_PURPOSE)
]


def require_purpose(value: str | None) -> str:
    """The stated purpose, or 422 purpose_required (checked after auth and district)."""
    purpose = (value or "").strip()
    if not purpose:
        raise PurposeRequired("state why you need this student data in the X-Purpose header")
    if len(purpose) > MAX_PURPOSE:
        raise InvalidRequest(f"X-Purpose is longer than {MAX_PURPOSE} characters")
    return purpose


def disclose(
    runtime: Runtime,
    principal: Principal,
    purpose: str,
    district_id: str,
    tokens: Iterable[str],
    endpoint: str,
    resource: str,
) -> None:
    """Record the disclosure before the data leaves (no record, no data: 503)."""
    runtime.disclosures.append(
        Disclosure(
            key_id=principal.key_id,
            role=principal.role,
            district_id=district_id,
            students=tuple(sorted(set(tokens))),
            endpoint=endpoint,
            resource=resource,
            purpose=purpose,
        )
    )
