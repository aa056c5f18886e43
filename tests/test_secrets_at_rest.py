from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from f.chatmill.lib.secretbox import SecretBox, SecretBoxError, hint

from chatmill.passwords import MAX_PASSWORD_BYTES, PasswordTooLong, hash_password, verify_password


def test_secret_round_trip_is_not_plaintext() -> None:
    box = SecretBox([Fernet.generate_key().decode()])
    token = box.encrypt("EAAG-access-token")
    assert "EAAG" not in token
    assert box.decrypt(token) == "EAAG-access-token"


def test_key_rotation_keeps_old_values_readable_and_reencrypts() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = SecretBox([old]).encrypt("app-secret")
    rotated = SecretBox([new, old])
    assert rotated.decrypt(stored) == "app-secret"
    reencrypted = rotated.reencrypt(stored)
    assert SecretBox([new]).decrypt(reencrypted) == "app-secret"
    with pytest.raises(SecretBoxError):
        SecretBox([new]).decrypt(stored)


def test_malformed_key_is_a_clear_error() -> None:
    with pytest.raises(SecretBoxError, match="32 url-safe base64"):
        SecretBox(["not-a-key"])


def test_hint_shows_only_the_last_four_characters() -> None:
    assert hint("EAAGabcdef1234") == "…1234"
    assert hint("abc") == "…"


def test_passwords_longer_than_bcrypt_reads_are_refused_not_truncated() -> None:
    exact = "é" * (MAX_PASSWORD_BYTES // 2)  # 72 bytes
    stored = hash_password(exact, rounds=4)
    assert verify_password(exact, stored)
    assert not verify_password(exact + "x", stored)
    with pytest.raises(PasswordTooLong):
        hash_password(exact + "x", rounds=4)
