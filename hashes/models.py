from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import MD5
from django.utils import timezone

from consortium_client.feedback import REASON_CODES, VERDICTS, feedback_status
from consortium_client.hashvalues import ALGORITHMS
from consortium_client.vpdq import QUALITY_FLOOR as VPDQ_QUALITY_FLOOR
from consortium_client.vpdq import QUERY_SHARE as VPDQ_QUERY_SHARE
from consortium_client.vpdq import STORED_SHARE as VPDQ_STORED_SHARE
from partners.models import ApiKey, Partner, SharingGroup, SigningKey


class HashList(models.Model):
    """A named collection of entries with a purpose, an owner and a visibility."""

    class Visibility(models.TextChoices):
        ALL = "all", "all active partners"
        GROUP = "group", "a sharing group"
        OWNER = "owner", "the owner only"

    class Contributors(models.TextChoices):
        MEMBERS = "members", "every partner who sees the list"
        OWNER = "owner", "the owner only"

    name = models.SlugField(max_length=64, unique=True)
    purpose = models.CharField(max_length=64, blank=True, help_text="e.g. ncii, csam, terrorism")
    description = models.TextField(blank=True)
    owner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="owned_lists")
    visibility = models.CharField(max_length=8, choices=Visibility.choices)
    group = models.ForeignKey(
        SharingGroup, on_delete=models.PROTECT, null=True, blank=True, related_name="lists"
    )
    contributors = models.CharField(
        max_length=8, choices=Contributors.choices, default=Contributors.MEMBERS
    )
    match_variants = models.BooleanField(
        default=True,
        help_text="Whether entries match through their variants (submitted edits of the "
        "image), not only through their own value.",
    )
    match_distances = models.JSONField(
        default=dict,
        blank=True,
        help_text='Hamming radius per algorithm, overriding the defaults, e.g. {"pdq": 24}.',
    )
    # HMA's vPDQ rule (consortium_client.vpdq): a video matches when at least these shares
    # of the query's frames and of the stored video's frames (those of PDQ quality at least
    # the floor) have a frame within the list's vpdq distance on the other side.
    video_query_share = models.PositiveSmallIntegerField(
        default=VPDQ_QUERY_SHARE,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Percent of a queried video's frames that must match a stored video's.",
    )
    video_stored_share = models.PositiveSmallIntegerField(
        default=VPDQ_STORED_SHARE,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Percent of a stored video's frames that must match the queried video's.",
    )
    video_quality_floor = models.PositiveSmallIntegerField(
        default=VPDQ_QUALITY_FLOOR,
        validators=[MaxValueValidator(100)],
        help_text="Video frames of lower PDQ quality (0-100) are left out on both sides.",
    )
    review_required = models.BooleanField(
        default=False,
        db_default=False,
        help_text="New entries stay pending (fed as pending, never matched by default) until "
        "the review policy confirms them.",
    )
    reviews_needed = models.PositiveSmallIntegerField(
        default=1,
        db_default=1,
        help_text="How many distinct partners' agree verdicts confirm a pending entry (only "
        "the designated reviewers' count when there are any).",
    )
    reviewers = models.ManyToManyField(
        Partner,
        blank=True,
        related_name="reviewed_lists",
        help_text="Designated reviewer partners; empty means every partner who sees the list.",
    )
    grades = models.JSONField(
        default=list,
        blank=True,
        help_text='The grade scale an agree verdict may carry, e.g. ["a", "b", "c"]; empty for '
        "no grades.",
    )
    quarantine_after = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Quarantine an entry (it stops matching) at this many distinct partners' "
        "false_positive verdicts; empty for never.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(visibility="group", group__isnull=False) | ~Q(visibility="group"),
                name="hashlist_group_visibility_has_group",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def match_distance(self, algorithm: str) -> int:
        """The radius this list matches `algorithm` within: its override, or the default."""
        distance = self.match_distances.get(algorithm)
        return ALGORITHMS[algorithm].default_distance if distance is None else int(distance)

    def clean(self) -> None:
        try:
            match_distances_clean(self.match_distances)
        except ValueError as exc:
            raise ValidationError({"match_distances": str(exc)}) from exc
        try:
            grades_clean(self.grades)
        except ValueError as exc:
            raise ValidationError({"grades": str(exc)}) from exc
        if self.reviews_needed < 1:
            raise ValidationError({"reviews_needed": "at least one review confirms an entry"})
        if self.quarantine_after is not None and self.quarantine_after < 1:
            raise ValidationError({"quarantine_after": "at least 1, or empty for never"})


GRADE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
MAX_GRADES = 16


def grades_clean(grades: object) -> list[str]:
    """A list's grade scale: up to 16 distinct codes (lowercase letters, digits, _ . -)."""
    if not isinstance(grades, list) or len(grades) > MAX_GRADES:
        raise ValueError(f"grades must be a list of at most {MAX_GRADES} codes")
    for grade in grades:
        if not isinstance(grade, str) or not GRADE_PATTERN.fullmatch(grade):
            raise ValueError(f"{grade!r} is not a grade code (a-z, 0-9, _ . -; 1 to 32)")
    if len(set(grades)) != len(grades):
        raise ValueError("each grade is named once")
    return grades


def match_distances_clean(distances: object) -> dict[str, int]:
    """Validate per-algorithm radii: known algorithms, 0 up to the hash width; exact hashes 0."""
    if not isinstance(distances, dict):
        raise ValueError("match distances must be an object of algorithm: radius")
    for algorithm, distance in distances.items():
        spec = ALGORITHMS.get(algorithm)
        if spec is None:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        limit = spec.bits if spec.perceptual else 0
        is_integer = isinstance(distance, int) and not isinstance(distance, bool)
        if not is_integer or not 0 <= distance <= limit:
            raise ValueError(f"{algorithm} radius must be an integer from 0 to {limit}")
    return distances


class SignedStatement(models.Model):
    """What every signed document stores to take effect at most once (hashes.statements).

    A partner's statement is known by its signed `nonce`; `payload_sha256` tells a replay of
    the same statement (answered with the original result) from a nonce reused for other
    content (refused). Both are NULL only for an administrator's revocation, which is not
    signed.
    """

    nonce = models.CharField(max_length=128, null=True)  # noqa: DJ001 - NULL when unsigned
    payload_sha256 = models.CharField(max_length=64, null=True)  # noqa: DJ001 - NULL when unsigned
    signed_at = models.DateTimeField(null=True, help_text="The payload's signed timestamp.")

    class Meta:
        abstract = True


class Submission(SignedStatement):
    """A signed batch. A version 2 envelope (salted commitments) is stored in canonical form
    (hashes.envelopes.submission_request_parse), its signed payload byte for byte; a legacy
    version 1 envelope as the exact bytes received.

    A legacy envelope signs the hash values themselves, so erasing one of its entries
    redacts it: `envelope` is emptied, `envelope_sha256` (in the log's leaves) is kept, and
    `redacted_at` and `redaction_reason` say when and why.
    """

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="submissions")
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    signing_key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="+")
    hash_list = models.ForeignKey(HashList, on_delete=models.PROTECT, related_name="+")
    envelope = models.BinaryField()
    envelope_sha256 = models.CharField(max_length=64)
    payload_version = models.PositiveSmallIntegerField(default=2)
    entry_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    redacted_at = models.DateTimeField(null=True, blank=True)
    redaction_reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            # Idempotency: the same envelope from the same partner is one submission.
            models.UniqueConstraint(
                fields=["partner", "envelope_sha256"], name="submission_once_per_envelope"
            ),
            # A statement takes effect once: keyed on what was signed, not on the bytes.
            models.UniqueConstraint(fields=["partner", "nonce"], name="submission_once_per_nonce"),
        ]

    def __str__(self) -> str:
        return f"submission {self.pk} by {self.partner_id}"


class Revocation(SignedStatement):
    """A signed statement by a submitter, or an administrator's decision, ending entries."""

    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, null=True, blank=True, related_name="revocations"
    )
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, null=True, related_name="+")
    signing_key = models.ForeignKey(
        SigningKey, on_delete=models.PROTECT, null=True, related_name="+"
    )
    administrator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    envelope = models.BinaryField(null=True)
    envelope_sha256 = models.CharField(max_length=64, null=True)  # noqa: DJ001 - NULL for admins: unique only among envelopes
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "envelope_sha256"], name="revocation_once_per_envelope"
            ),
            models.UniqueConstraint(fields=["partner", "nonce"], name="revocation_once_per_nonce"),
            models.CheckConstraint(
                condition=Q(partner__isnull=False) | Q(administrator__isnull=False),
                name="revocation_has_an_author",
            ),
        ]

    def __str__(self) -> str:
        return f"revocation {self.pk}"

    @property
    def revoked_by(self) -> str:
        """The submitting partner's name, or admin:<username> (one of them is always set)."""
        if self.partner is not None:
            return self.partner.name
        if self.administrator is not None:
            return f"admin:{self.administrator.get_username()}"
        raise ValueError("a revocation without an author")


class Entry(models.Model):
    """One hash in one list. Never deleted; a revocation ends it, an erasure forgets it.

    Its id is the log index of the event that added it, so the id alone locates its leaf.
    The leaf holds `commitment`; `value` and `salt` open it and are both NULL once the entry
    is erased (status `erased`), which leaves every leaf and signature intact.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        REVOKED = "revoked"
        ERASED = "erased"

    # Foreign keys without their own index: entries are written in bulk and the
    # composite constraint below already serves lookups by list.
    id = models.BigIntegerField(primary_key=True)
    hash_list = models.ForeignKey(
        HashList, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    algorithm = models.CharField(max_length=16)
    # Up to 64 hex characters for one hash; a vpdq value (a video's frames) is longer, up to
    # hashvalues.VPDQ_MAX_LENGTH, so the indexes below key on its MD5: a B-tree row holds
    # at most about 2.7 KB.
    value = models.TextField(null=True)  # noqa: DJ001 - NULL once erased
    salt = models.CharField(max_length=32, null=True)  # noqa: DJ001 - NULL once erased
    commitment = models.CharField(max_length=64)
    labels = models.JSONField(default=list)
    note = models.TextField(blank=True)
    quality = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="PDQ quality 0-100 reported by the submitter."
    )
    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    submission = models.ForeignKey(Submission, on_delete=models.PROTECT, related_name="entries")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    revocation = models.ForeignKey(
        Revocation, on_delete=models.PROTECT, null=True, related_name="entries", db_index=False
    )
    revoked_at = models.DateTimeField(null=True)
    revoked_log_index = models.BigIntegerField(null=True, help_text="Index of the tombstone.")
    erased_at = models.DateTimeField(null=True)
    erased_log_index = models.BigIntegerField(null=True, help_text="Index of the erasure.")
    erasure_reason = models.TextField(blank=True)
    # Review and quarantine (hashes.services.feedback): whether the entry may match.
    review = models.CharField(  # noqa: DJ001 - NULL: the list needed no review
        max_length=16,
        choices=[("pending", "pending"), ("confirmed", "confirmed")],
        null=True,
        blank=True,
        help_text="pending until the list's review policy confirms it; NULL if none applied",
    )
    grade = models.CharField(max_length=32, blank=True, default="", db_default="")
    confirmed_log_index = models.BigIntegerField(null=True, blank=True)
    quarantined_log_index = models.BigIntegerField(
        null=True, blank=True, help_text="Index of the quarantine in force; NULL when none."
    )
    quarantine_reason = models.CharField(max_length=32, blank=True, default="", db_default="")
    quarantine_resolved_log_index = models.BigIntegerField(
        null=True, blank=True, help_text="Index of the last resolution of a quarantine."
    )
    # Current verdicts, counted in the transaction that changes them (one row per match).
    # Database defaults too: rows written outside the ORM (bulk COPY, fixtures) start at 0.
    agree_count = models.PositiveIntegerField(default=0, db_default=0)
    disagree_count = models.PositiveIntegerField(default=0, db_default=0)
    false_positive_count = models.PositiveIntegerField(default=0, db_default=0)

    class Meta:
        verbose_name_plural = "entries"
        constraints = [
            # A partner holds a hash at most once per list while it is active; other
            # partners may corroborate it with entries of their own.
            models.UniqueConstraint(
                F("hash_list"),
                F("algorithm"),
                MD5("value"),
                F("partner"),
                condition=Q(status="active"),
                name="entry_active_once_per_partner",
            ),
        ]
        indexes = [
            # Revoked hashes by value, for refusing a resubmission signed before the
            # revocation. Partial: revocations are rare, and ingest pays nothing for it.
            models.Index(
                F("hash_list"),
                F("algorithm"),
                MD5("value"),
                F("partner"),
                condition=Q(status="revoked"),
                name="entry_revoked_by_hash",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.commitment[:16]}"

    @property
    def log_index(self) -> int:
        return self.pk

    @property
    def quarantined(self) -> bool:
        return self.quarantined_log_index is not None

    @property
    def feedback_status(self) -> str | None:
        return feedback_status(
            agree=self.agree_count,
            negative=self.disagree_count + self.false_positive_count,
            review=self.review,
        )


class EntryVariant(models.Model):
    """A variant of a PDQ entry: the PDQ hash of a named edit of the submitter's image (a
    crop, a small rotation; `consortium_client.variants.VARIANTS`), submitted with the entry
    so that edited copies still match it.

    Committed like the entry's own value: the entry's leaf lists `{name, commitment}` in
    `position` order, and `value` and `salt` open the commitment. A variant has no status of
    its own: it matches while its entry is active, and its value and salt are deleted
    (NULL) when its entry is erased.
    """

    entry = models.ForeignKey(
        Entry, on_delete=models.PROTECT, related_name="variants", db_index=False
    )
    position = models.PositiveSmallIntegerField(help_text="its place in the leaf's variants")
    name = models.CharField(max_length=32)
    value = models.CharField(max_length=64, null=True)  # noqa: DJ001 - NULL once erased
    salt = models.CharField(max_length=32, null=True)  # noqa: DJ001 - NULL once erased
    commitment = models.CharField(max_length=64)

    class Meta:
        ordering = ["entry_id", "position"]
        constraints = [
            # Also the index for every read by entry (feed, erasure, the match index).
            models.UniqueConstraint(fields=["entry", "position"], name="variant_once_per_place"),
        ]

    def __str__(self) -> str:
        return f"{self.name} of entry {self.entry_id}"


class Feedback(SignedStatement):
    """One partner's signed verdict on an entry, as received; `current` marks the verdict in
    force (one per partner and entry). A changed verdict is a new row, the old one kept with
    `current` False: the history, each verdict also a log event (`log_index`)."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="feedback")
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    signing_key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="+")
    entry = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="feedback")
    envelope = models.BinaryField()
    envelope_sha256 = models.CharField(max_length=64)
    verdict = models.CharField(max_length=16, choices=[(v, v) for v in VERDICTS])
    reason = models.CharField(max_length=32, choices=[(r, r) for r in REASON_CODES])
    grade = models.CharField(max_length=32, blank=True)
    note = models.TextField(blank=True, help_text="signed; never in the log")
    current = models.BooleanField(default=True)
    log_index = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "feedback"
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "envelope_sha256"], name="feedback_once_per_envelope"
            ),
            models.UniqueConstraint(fields=["partner", "nonce"], name="feedback_once_per_nonce"),
            models.UniqueConstraint(
                fields=["entry", "partner"],
                condition=Q(current=True),
                name="feedback_one_current_per_partner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} on entry {self.entry_id} by {self.partner_id}"


class QuarantineResolution(models.Model):
    """How a quarantine ended: restored by the entry's submitter or an administrator, or the
    entry revoked. Its log event is `log_index`."""

    class Outcome(models.TextChoices):
        RESTORED = "restored"
        REVOKED = "revoked"

    entry = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="resolutions")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    administrator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolved_by = models.CharField(
        max_length=200, help_text="as the log names it: a partner, admin:<user> or command:<name>"
    )
    reason = models.TextField()
    log_index = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.outcome} entry {self.entry_id}"
