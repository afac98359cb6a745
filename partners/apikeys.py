"""API key secrets: format, digest and constant-time check.

A key reads `csk_<prefix>_<secret>`. The prefix is stored in clear to find the row and to
name the key in the access log; the whole key is stored only as an HMAC-SHA256 digest
under API_KEY_HMAC_KEY, so a copy of the database does not yield usable keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings

KEY_MARK = "csk"
PREFIX_BYTES = 6
SECRET_BYTES = 32
_HEX_DIGITS = "0123456789abcdef"


def apikey_digest(full_key: str) -> str:
    return hmac.new(
        settings.API_KEY_HMAC_KEY.encode(), full_key.encode(), hashlib.sha256
    ).hexdigest()


def apikey_generate() -> tuple[str, str]:
    """Return a new (prefix, full key)."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    return prefix, f"{KEY_MARK}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


def apikey_prefix(full_key: str) -> str | None:
    """The prefix of a well-formed key, or None."""
    mark, _, rest = full_key.partition("_")
    prefix, _, secret = rest.partition("_")
    if mark != KEY_MARK or len(prefix) != 2 * PREFIX_BYTES or not secret:
        return None
    # Only what apikey_generate makes: the prefix is looked up and written to the access
    # log, and a NUL in it would fail in PostgreSQL rather than be refused.
    if not all(character in _HEX_DIGITS for character in prefix):
        return None
    return prefix


def apikey_matches(full_key: str, digest: str) -> bool:
    return hmac.compare_digest(apikey_digest(full_key), digest)
