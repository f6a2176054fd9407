"""API keys are compared in constant time against every known digest, never by early exit."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import pytest
from builders import write_keys

from tutorledger.infra import keys as keys_module
from tutorledger.infra.keys import KeySpec, KeyStore

SPECS = [
    KeySpec(key=f"key-number-{i:02d}-000000000", role="dashboard", districts=["*"])
    for i in range(5)
]


@pytest.mark.parametrize("token", ["key-number-00-000000000", "key-number-04-000000000", "nope"])
def test_every_digest_is_compared_whatever_matches(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    calls: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", counting)
    store = KeyStore(SPECS)
    found = store.authenticate(token)
    assert len(calls) == len(SPECS)
    assert (found is not None) == token.startswith("key-number")


def test_plain_keys_in_the_file_are_warned_about_without_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = "plain-key-that-must-not-be-logged"
    path = write_keys(
        tmp_path / "keys.json",
        [
            {"key": plain, "role": "admin", "districts": ["*"]},
            {"key_sha256": hashlib.sha256(b"x" * 20).hexdigest(), "role": "admin",
             "districts": ["*"]},
        ],
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        store = KeyStore.from_file(path)
    assert store.plain_keys == 1
    assert "key_sha256" in caplog.text
    assert plain not in caplog.text
    assert all(plain not in str(vars(r)) for r in caplog.records)
