from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class LogHead(models.Model):
    """The log's size, in one row. Locking it serialises index assignment (see log_append)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    size = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"log size {self.size}"


class LogEvent(models.Model):
    """One event of the append-only log, with the exact leaf bytes it is hashed from.

    On PostgreSQL a trigger refuses UPDATE and DELETE (migration 0002).
    """

    index = models.BigIntegerField(primary_key=True)
    event_type = models.CharField(max_length=32)
    time = models.DateTimeField()
    # What the feed filters on; no index of their own: the feed walks the primary key. The
    # id of a list of the hashes app, not a foreign key: the log is audit's, and a row of it
    # must never depend on (or lock) a row another app owns.
    hash_list_id = models.BigIntegerField(null=True)
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, null=True, related_name="+", db_index=False
    )
    leaf = models.BinaryField()

    class Meta:
        ordering = ["index"]

    def __str__(self) -> str:
        return f"{self.index} {self.event_type}"


class AccessEvent(models.Model):
    """Who did what to what, when, from where, with what result. Append-only like the log."""

    time = models.DateTimeField(default=timezone.now)
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, null=True, related_name="+", db_index=False
    )
    key_prefix = models.CharField(max_length=16, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    actor = models.CharField(max_length=160, help_text="partner:<name>, admin:<user> or command")
    action = models.CharField(max_length=48)
    target = models.CharField(max_length=255, blank=True)
    records = models.PositiveIntegerField(default=0)
    status = models.PositiveSmallIntegerField()
    client_ip = models.GenericIPAddressField(null=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        # Each filter of the access-event browser is an equality on one of these columns and
        # a keyset walk down the id (audit.selectors.access_events_browse); time ranges are
        # turned into id ranges through AccessHour.
        indexes = [
            models.Index(fields=["partner", "-id"], name="access_by_partner"),
            models.Index(fields=["action", "-id"], name="access_by_action"),
            models.Index(fields=["time"], name="access_by_time"),
            models.Index(fields=["key_prefix", "-id"], name="access_by_key"),
            models.Index(fields=["status", "-id"], name="access_by_status"),
            models.Index(fields=["target", "-id"], name="access_by_target"),
        ]
        # Who may open the auditors' web pages (audit.web.access): staff users holding it.
        permissions = [("view_audit_pages", "Can view the auditors' pages of every partner")]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.status}"


class AccessPeriod(models.Model):
    """A sealed period of the access log: the access events with after_id < id <= last_id.

    Periods are numbered from 1 without gaps, each starting where the previous one ended
    (period 1 after id 0), so together they cover every id up to the latest last_id once.
    Sealed by `access_period_seal`, which appends the `access_period_sealed` log event at
    `log_index` in the same transaction. On PostgreSQL a trigger refuses UPDATE and DELETE,
    as on the log.
    """

    number = models.BigIntegerField(primary_key=True)
    after_id = models.BigIntegerField(unique=True, help_text="exclusive")
    last_id = models.BigIntegerField(unique=True, help_text="inclusive")
    count = models.BigIntegerField()
    root = models.CharField(max_length=64, help_text="hex Merkle root of the encodings")
    log_index = models.BigIntegerField(unique=True)
    sealed_at = models.DateTimeField()

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_id__gt=models.F("after_id")), name="access_period_range"
            ),
            models.CheckConstraint(
                condition=models.Q(count__gte=0)
                & models.Q(count__lte=models.F("last_id") - models.F("after_id")),
                name="access_period_count",
            ),
            # Only the first period starts at the beginning; with after_id and last_id
            # unique and the sealer's lock, the periods chain without gap or overlap.
            models.CheckConstraint(
                condition=models.Q(number=1, after_id=0) | models.Q(number__gt=1, after_id__gt=0),
                name="access_period_start",
            ),
        ]

    def __str__(self) -> str:
        return f"access period {self.number} ({self.after_id}, {self.last_id}]"


class LogTile(models.Model):
    """One C2SP tlog-tiles tile of the log's Merkle tree: `hashes` is the concatenation of up
    to 256 hashes of tree level 8 * `level`, from 256 * `index` on (merkle.Tile).

    Only ever grows at its end, in the transaction that appends the events it hashes
    (audit.tree.tree_extend, called by log_append under the log head lock), so that every
    committed tree size has its tiles committed with it. Derived data: tree_rebuild makes
    it again from the leaves, and log_verify compares the two.
    """

    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    hashes = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["level", "index"], name="log_tile_position"),
        ]

    def __str__(self) -> str:
        return f"tile {self.level}/{self.index} ({len(self.hashes) // 32} hashes)"


class Checkpoint(models.Model):
    """A signed checkpoint: the C2SP signed note of the tree of `size` leaves with `root`.

    One per size (unique), so the server can never have signed two roots for one size;
    append-only on PostgreSQL like the log.
    """

    size = models.BigIntegerField(unique=True)
    root = models.BinaryField()
    note = models.TextField(help_text="the note as the log key signed it")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-size"]

    def __str__(self) -> str:
        return f"checkpoint {self.size}"


class Cosignature(models.Model):
    """A cosignature/v1 of a checkpoint, served as one more line of its note: a partner's
    (partner and signing key set, witness empty) or an outside witness's (witness set to
    its name, as LOG_WITNESSES names it; partner and signing key null).

    At most one per checkpoint and signing key, and one per checkpoint and witness: a second
    cosignature by the same key changes nothing (the first timestamp stays).
    """

    checkpoint = models.ForeignKey(
        Checkpoint, on_delete=models.PROTECT, related_name="cosignatures"
    )
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="+", null=True
    )
    signing_key = models.ForeignKey(
        "partners.SigningKey", on_delete=models.PROTECT, related_name="+", null=True
    )
    witness = models.CharField(
        max_length=255, blank=True, default="", help_text="an outside witness's key name"
    )
    timestamp = models.BigIntegerField(help_text="POSIX seconds, as the cosigner signed it")
    line = models.TextField(help_text="the signature line, as served in the note")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # When each cosigner last cosigned (the auditors' log health page), one probe each.
        indexes = [
            models.Index(fields=["signing_key", "-checkpoint"], name="cosignature_by_key"),
            models.Index(fields=["witness", "-checkpoint"], name="cosignature_by_witness"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["checkpoint", "signing_key"], name="one_cosignature_per_key"
            ),
            # Also the index witness_cosigned_size walks, from the largest checkpoint down.
            models.UniqueConstraint(
                fields=["checkpoint", "witness"],
                condition=~models.Q(witness=""),
                name="one_cosignature_per_witness",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(witness="", partner__isnull=False, signing_key__isnull=False)
                    | (
                        ~models.Q(witness="")
                        & models.Q(partner__isnull=True, signing_key__isnull=True)
                    )
                ),
                name="cosigner_partner_or_witness",
            ),
        ]

    def __str__(self) -> str:
        cosigner = f"witness {self.witness}" if self.witness else f"partner {self.partner_id}"
        return f"cosignature of {self.checkpoint_id} by {cosigner}"


class AccessRollup(models.Model):
    """How far the access log is rolled up into AccessDaily and AccessHour, in one row.

    Every access event with id <= `last_id` is counted in them exactly once; the events
    above it (the tail) are counted directly by whoever reads the counts. The roll-up
    (audit.services.access_rollup) advances `last_id` only to a settled id, below which
    nothing can commit any more, in the transaction that adds the counts.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_id = models.BigIntegerField(default=0)
    rolled_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"access events rolled up to {self.last_id}"


class AccessDaily(models.Model):
    """Access events of one partner on one UTC day, rolled up: the overview's numbers.

    `partner_id` 0 stands for events of no partner (administrators, commands, anonymous
    callers): a plain column rather than a foreign key, so that the roll-up's
    INSERT ... ON CONFLICT has a non-null key, and no row here locks a partner's row.
    """

    day = models.DateField()
    partner_id = models.BigIntegerField()
    requests = models.BigIntegerField(default=0)
    records = models.BigIntegerField(default=0)
    refusals = models.BigIntegerField(default=0, help_text="events with status 400 or above")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "partner_id"], name="access_daily_key"),
        ]

    def __str__(self) -> str:
        return f"{self.day} partner {self.partner_id}: {self.requests}"


class AccessHour(models.Model):
    """The smallest and largest id of the rolled-up access events of one UTC hour.

    Turns a time range into an id range (audit.selectors.access_id_bounds): every event of
    the hour with id <= AccessRollup.last_id lies in [first_id, last_id], so the browser's
    filters walk an id index between two bounds instead of a time index and a sort.
    """

    hour = models.DateTimeField(primary_key=True)
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h: ids {self.first_id}..{self.last_id}"
