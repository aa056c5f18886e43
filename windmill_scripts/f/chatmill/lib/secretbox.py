"""Encryption at rest for tenant secrets (WhatsApp access tokens, app secrets, verify tokens).

Fernet (AES-128-CBC + HMAC-SHA256, from the `cryptography` package) with key rotation: the first key
encrypts, every key decrypts, so a new key is put first and the old one kept until
:func:`reencrypt` has rewritten the stored values. Keys come from the environment
(``ENCRYPTION_KEYS`` for the apps, a Windmill secret variable for flows) and are passed in; this
module never reads configuration itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBoxError(ValueError):
    """A key is malformed or a stored value cannot be decrypted with any configured key."""


class SecretBox:
    """Encrypts and decrypts short secrets with a rotating list of Fernet keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretBoxError("at least one encryption key is required")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError as exc:
            raise SecretBoxError(
                "encryption keys must be 32 url-safe base64-encoded bytes "
                "(generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError("stored secret cannot be decrypted with the configured keys") from exc

    def reencrypt(self, token: str) -> str:
        """Re-encrypt ``token`` with the first (current) key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError("stored secret cannot be decrypted with the configured keys") from exc


def hint(secret: str) -> str:
    """What the API may show of a secret: its last four characters."""
    return f"…{secret[-4:]}" if len(secret) > 4 else "…"
