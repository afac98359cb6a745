"""Recovery codes as a django-otp device, stored as digests.

django-otp's own static device keeps its tokens in clear text, so anyone who can read the
database (a replica, a backup) could log in as any staff user with a password it also knows
or resets. Here only the SHA-256 of each code is kept: a code has 80 random bits, so the
digest cannot be reversed by trying codes, and no key is needed (rotating SECRET_KEY leaves
codes working).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from base64 import b32encode

from django.db import models
from django_otp.models import Device, ThrottlingMixin, TimestampMixin

RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 characters, shown as xxxx-xxxx-xxxx-xxxx


def recovery_code_new() -> str:
    text = b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode("ascii").lower()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def recovery_code_normal(code: str) -> str:
    """The code as typed, without the separators and spaces people add or leave out."""
    return re.sub(r"[\s-]", "", code).lower()


def recovery_code_digest(code: str) -> str:
    return hashlib.sha256(recovery_code_normal(code).encode("utf-8")).hexdigest()


def is_recovery_code(token: str) -> bool:
    return re.fullmatch(r"[a-z2-7]{16}", recovery_code_normal(token)) is not None


class RecoveryCodeDevice(TimestampMixin, ThrottlingMixin, Device):
    """A staff user's one-time recovery codes: each verifies once, then is gone."""

    class Meta(Device.Meta):
        verbose_name = "recovery code set"

    def get_throttle_factor(self) -> int:
        return 1

    def verify_token(self, token: str) -> bool:
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        # The delete is the check: of two logins racing with one code, only one deletes it.
        used, _ = self.codes.filter(digest=recovery_code_digest(token)).delete()
        if used:
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.save()
            return True
        self.throttle_increment()
        return False

    def codes_issue(self, count: int) -> list[str]:
        """Replace this device's codes with `count` new ones, returned once, stored hashed."""
        self.codes.all().delete()
        codes = [recovery_code_new() for _ in range(count)]
        RecoveryCode.objects.bulk_create(
            RecoveryCode(device=self, digest=recovery_code_digest(code)) for code in codes
        )
        return codes


class RecoveryCode(models.Model):
    device = models.ForeignKey(RecoveryCodeDevice, on_delete=models.CASCADE, related_name="codes")
    digest = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "digest"], name="recovery_code_once"),
        ]

    def __str__(self) -> str:
        return f"recovery code of {self.device}"
