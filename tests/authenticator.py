"""What a staff user's authenticator app does with the otpauth:// URI it was given (RFC 6238,
written here from the RFC rather than taken from the server's code), and the enrolment a
staff user is handed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import struct
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from django.core.management import call_command


@dataclass(frozen=True)
class Enrolment:
    uri: str
    recovery_codes: list[str]
    output: str


def enrol(username: str) -> Enrolment:
    """Run `staff_totp_enroll` as an administrator would, and read what it printed."""
    out = io.StringIO()
    call_command("staff_totp_enroll", username, "--no-qr", stdout=out)
    text = out.getvalue()
    (uri,) = re.findall(r"otpauth://\S+", text)
    codes = re.findall(r"^  ([a-z2-7]{4}(?:-[a-z2-7]{4}){3})$", text, re.MULTILINE)
    return Enrolment(uri, codes, text)


def totp_code(uri: str, *, at: float | None = None) -> str:
    """The code an authenticator app shows for `uri` at time `at` (now by default)."""
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    params = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert params.get("algorithm", "SHA1") == "SHA1"
    secret = params["secret"]
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digits, period = int(params.get("digits", 6)), int(params.get("period", 30))
    counter = int((time.time() if at is None else at) // period)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 10**digits:0{digits}d}"


def wrong_totp_code(uri: str) -> str:
    """A 6-digit code the server must refuse: none of the codes of the steps it accepts."""
    now = time.time()
    accepted = {totp_code(uri, at=now + shift) for shift in (-60, -30, 0, 30, 60)}
    return next(code for n in range(10**6) if (code := f"{n:06d}") not in accepted)
