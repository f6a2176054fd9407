"""AES-256-GCM and HMAC-SHA256 from `cryptography`: the Cipher the ledger seals students with."""

from __future__ import annotations

import base64
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tutorledger.domain.errors import TutorLedgerError

NONCE_BYTES = 12
PREFIX = "v1."  # the format of a sealed value, so it can change later without ambiguity


class SealBroken(TutorLedgerError):
    """A sealed value failed authentication: altered, or moved from another event."""

    code = "seal_broken"
    status = 500


class AesGcmCipher:
    """Random 96-bit nonce per value; the event's identity is the associated data."""

    def new_key(self) -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def new_token(self) -> str:
        return secrets.token_urlsafe(18)  # 144 random bits, 24 characters

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)  # what secrets.token_bytes reads, without its layers
        body = AESGCM(key).encrypt(nonce, plaintext, aad)
        return PREFIX + base64.urlsafe_b64encode(nonce + body).decode()

    def open(self, key: bytes, sealed: str, aad: bytes) -> bytes:
        if not sealed.startswith(PREFIX):
            raise SealBroken("unknown sealed-value format")
        raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :])
        try:
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
        except InvalidTag:
            raise SealBroken("sealed value failed authentication") from None

    def mac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, "sha256")  # one-shot, in C
