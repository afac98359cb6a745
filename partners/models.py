from __future__ import annotations

from django.db import models
from django.utils import timezone


class Partner(models.Model):
    """An organisation in the consortium. Never deleted: its entries stay attributed."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ACTIVE = "active"
        SUSPENDED = "suspended"

    class Kind(models.TextChoices):
        PLATFORM = "platform"
        HOTLINE = "hotline"
        NGO = "ngo"
        AGENCY = "agency"

    name = models.SlugField(max_length=64, unique=True, help_text="Stable identifier.")
    display_name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PLATFORM)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class SharingGroup(models.Model):
    """Named partners a list can be shared with."""

    name = models.SlugField(max_length=64, unique=True)
    members = models.ManyToManyField(Partner, related_name="sharing_groups", blank=True)

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """How a partner's software authenticates. The secret itself is never stored."""

    class Scope(models.TextChoices):
        SUBMIT = "submit"
        READ = "read"
        MATCH = "match"
        AUDIT = "audit"

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    allowed_networks = models.JSONField(
        default=list, blank=True, help_text="CIDR networks the key may be used from; empty: any."
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.partner.name}:{self.prefix}"


class SigningKey(models.Model):
    """An Ed25519 public key a partner signs submissions and revocations with."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="signing_keys")
    key_id = models.CharField(max_length=64, unique=True, editable=False)
    public_key = models.BinaryField(max_length=32)
    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.partner.name}:{self.key_id[:12]}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
