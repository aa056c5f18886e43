"""Meta's webhook signature: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``.

Checked over the exact bytes received, before anything parses them (Meta signs the escaped-unicode
body it sends; re-serialising would change the bytes), with a constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header value Meta would send for ``body``."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secrets: list[str], body: bytes, header: str | None) -> bool:
    """True when ``header`` is a valid signature of ``body`` under any of ``secrets``."""
    if not header or not header.startswith(_PREFIX):
        return False
    received = header[len(_PREFIX) :].strip().lower().encode()
    valid = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        valid |= hmac.compare_digest(expected, received)
    return valid
