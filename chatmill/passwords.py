"""Password hashing with bcrypt.

bcrypt only reads the first 72 bytes of a password; longer ones are refused here rather than
silently truncated (two passwords sharing 72 bytes must not be the same password).
"""

from __future__ import annotations

import bcrypt

MAX_PASSWORD_BYTES = 72
BCRYPT_ROUNDS = 12


class PasswordTooLong(ValueError):
    """The password is longer than bcrypt can hash without truncating it."""


def hash_password(password: str, *, rounds: int = BCRYPT_ROUNDS) -> str:
    encoded = password.encode()
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong(f"passwords are limited to {MAX_PASSWORD_BYTES} bytes (UTF-8)")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds=rounds)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    encoded = password.encode()
    if len(encoded) > MAX_PASSWORD_BYTES:
        return False
    return bcrypt.checkpw(encoded, password_hash.encode())
