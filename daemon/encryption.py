"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) through MultiFernet.

The first key encrypts; every key decrypts, so a new key can be put in front of the old one and
`rotate` re-encrypts each stored value with it. We never design our own scheme.
"""

from __future__ import annotations

import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from daemon.errors import Unavailable

_KEY_SEPARATORS = re.compile(r"[\s,]+")


class SecretKeyError(Unavailable):
    """The key is missing, malformed or does not decrypt what is stored."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    def __init__(self, keys_text: str) -> None:
        keys = [k for k in _KEY_SEPARATORS.split(keys_text.strip()) if k]
        if not keys:
            raise SecretKeyError("the secret key is empty; make one with `mls-sync generate-key`")
        fernets = []
        for i, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise SecretKeyError(
                    f"secret key #{i} is not a Fernet key (32 url-safe base64 bytes); "
                    "make one with `mls-sync generate-key`"
                ) from None
        self._box = MultiFernet(fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._box.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._box.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                "the configured secret key does not decrypt the stored secrets; use the key "
                "the database was written with (several keys may be given, comma-separated)"
            ) from None

    def rotate(self, token: str) -> str:
        """Re-encrypts with the first key; fails like decrypt() for an unknown key."""
        try:
            return self._box.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise SecretKeyError(
                "a stored secret is not readable with any configured key"
            ) from None
