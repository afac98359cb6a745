from __future__ import annotations

from django.db import models
from django.utils import timezone


class Subscription(models.Model):
    """A partner's HTTPS endpoint and the webhook types it wants (webhooks.events).

    What the partner edits lives here; where delivery stands lives in its Cursor, which
    only the follower writes, so that an edit never races a delivery."""

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    url = models.CharField(max_length=2048)
    event_types = models.JSONField(default=list)
    description = models.CharField(max_length=200, blank=True)
    # The HMAC key of the signatures (whsec_ form shown once, at creation). Stored, since
    # every delivery is signed with it; never returned by the API again.
    secret = models.BinaryField()
    enabled = models.BooleanField(default=True)
    # Why it was disabled: "" while enabled, the partner's own choice, or the failures
    # that made the follower give up (the notice the API shows instead of an email).
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["partner", "id"], name="webhook_by_partner")]

    def __str__(self) -> str:
        return f"webhook {self.pk} of partner {self.partner_id}"


class Cursor(models.Model):
    """Where a subscription's follower stands in the log: every event up to `position` was
    delivered (answered 2xx) or is not for this subscription; the next one is retried at
    `retry_at` after `attempts` failures. Advanced only in the transaction that records a
    2xx, so a worker killed mid-delivery leaves it where it was."""

    subscription = models.OneToOneField(
        Subscription, on_delete=models.CASCADE, primary_key=True, related_name="cursor"
    )
    position = models.BigIntegerField(help_text="last log index handled; -1 before the first")
    attempts = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True)
    failing_since = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"webhook {self.subscription_id} at {self.position}"


class Delivery(models.Model):
    """One attempt to deliver one message: what the receiver answered, how long it took.
    Never the body (an erased value must not outlive its erasure here)."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    message_id = models.CharField(max_length=80)
    event_type = models.CharField(max_length=40)
    log_index = models.BigIntegerField(null=True, help_text="null for a test message")
    attempt = models.PositiveIntegerField()
    succeeded = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True)
    duration_ms = models.PositiveIntegerField()
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["subscription", "-id"], name="delivery_by_subscription")]

    def __str__(self) -> str:
        return f"{self.message_id} attempt {self.attempt}: {self.status_code or self.error}"
