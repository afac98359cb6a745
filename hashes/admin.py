from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from audit.admin import AuditedAdmin, ReadOnlyAdmin, admin_actor
from consortium.errors import ConsortiumError
from hashes.models import (
    Entry,
    EntryVariant,
    Feedback,
    HashList,
    QuarantineResolution,
    Revocation,
    Submission,
)
from hashes.services import entry_erase, quarantine_restore, revocation_by_administrator


@admin.register(HashList)
class HashListAdmin(AuditedAdmin):
    list_display = [
        "name",
        "purpose",
        "owner",
        "visibility",
        "group",
        "contributors",
        "match_variants",
        "review_required",
        "quarantine_after",
    ]
    list_filter = ["visibility", "purpose", "review_required"]
    filter_horizontal = ["reviewers"]
    search_fields = ["name", "purpose"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Log leaves and partners' submissions name the list, so its name never changes.
        return ["name"] if obj else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RevokeForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea, max_length=1000)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea, max_length=1000)


class EntryVariantInline(admin.TabularInline):
    """An entry's variants, shown and never edited: like the entry, a variant changes only
    through the services (it ends with its entry's revocation or erasure)."""

    model = EntryVariant
    fields = ["position", "name", "commitment", "shown_value"]
    readonly_fields = ["position", "name", "commitment", "shown_value"]
    ordering = ["position"]
    extra = 0
    can_delete = False
    show_change_link = False

    @admin.display(description="value")
    def shown_value(self, variant: EntryVariant) -> str:
        # An erased entry's variants hold no value (erasure sets it NULL); the entry's status
        # is checked too, so the page never shows a value beside "erased".
        if variant.value is None or variant.entry.status == Entry.Status.ERASED:
            return "(erased)"
        return variant.value

    def get_queryset(self, request: HttpRequest) -> QuerySet[EntryVariant]:
        return super().get_queryset(request).select_related("entry").defer("entry__value")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "hash_list",
        "algorithm",
        "value",
        "partner",
        "status",
        "review",
        "quarantined",
        "created_at",
    ]
    list_filter = ["status", "review", "algorithm", "hash_list"]
    search_fields = ["=value", "=id"]
    show_full_result_count = False
    actions = ["revoke", "erase", "restore"]

    @admin.display(boolean=True, description="quarantined")
    def quarantined(self, entry: Entry) -> bool:
        return entry.quarantined

    @admin.action(description="Restore selected quarantined entries (asks for a reason)")
    def restore(self, request: HttpRequest, queryset: QuerySet[Entry]) -> TemplateResponse | None:
        return self._each_with_reason(
            request,
            queryset,
            service=quarantine_restore,
            done="Restored",
            template="admin/hashes/restore.html",
            title="Restore quarantined entries",
        )

    def _each_with_reason(
        self,
        request: HttpRequest,
        queryset: QuerySet[Entry],
        *,
        service: Callable[..., Any],
        done: str,
        template: str,
        title: str,
    ) -> TemplateResponse | None:
        """An action that asks for a reason, then calls `service` on each selected entry."""
        form = ReasonForm(request.POST if "reason" in request.POST else None)
        if form.is_bound and form.is_valid():
            count = 0
            # One transaction per entry: each is its own log event and access event.
            for entry in queryset.order_by("pk"):
                try:
                    service(
                        actor=admin_actor(request),
                        entry_id=entry.pk,
                        reason=form.cleaned_data["reason"],
                    )
                except ConsortiumError as exc:
                    self.message_user(request, exc.detail, level="error")
                    continue
                count += 1
            self.message_user(request, f"{done} {count} entries.")
            return None
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "title": title,
                "entries": queryset,
                "form": form,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )

    inlines = [EntryVariantInline]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Needed for the revoke action; every field stays read-only.
        return obj is None and request.user.has_perm("hashes.change_entry")

    @admin.action(description="Revoke selected entries (asks for a reason)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Entry]) -> TemplateResponse | None:
        form = RevokeForm(request.POST if "reason" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                result = revocation_by_administrator(
                    actor=admin_actor(request),
                    entries=list(queryset),
                    reason=form.cleaned_data["reason"],
                )
            except ConsortiumError as exc:
                self.message_user(request, exc.detail, level="error")
                return None
            self.message_user(request, f"Revoked {len(result.events)} entries.")
            return None
        return TemplateResponse(
            request,
            "admin/hashes/revoke.html",
            {
                **self.admin_site.each_context(request),
                "title": "Revoke entries",
                "entries": queryset,
                "form": form,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )

    @admin.action(description="Erase the hash values of selected entries (asks for a reason)")
    def erase(self, request: HttpRequest, queryset: QuerySet[Entry]) -> TemplateResponse | None:
        return self._each_with_reason(
            request,
            queryset,
            service=entry_erase,
            done="Erased",
            template="admin/hashes/erase.html",
            title="Erase entries",
        )


@admin.register(Submission)
class SubmissionAdmin(ReadOnlyAdmin):
    list_display = ["id", "partner", "hash_list", "entry_count", "created_at"]
    list_filter = ["partner", "hash_list"]
    exclude = ["envelope"]
    show_full_result_count = False


@admin.register(Revocation)
class RevocationAdmin(ReadOnlyAdmin):
    list_display = ["id", "partner", "administrator", "reason", "created_at"]
    exclude = ["envelope"]


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    list_display = ["id", "entry_id", "partner", "verdict", "reason", "grade", "current"]
    list_filter = ["verdict", "current"]
    exclude = ["envelope"]
    show_full_result_count = False


@admin.register(QuarantineResolution)
class QuarantineResolutionAdmin(ReadOnlyAdmin):
    list_display = ["id", "entry_id", "outcome", "resolved_by", "reason", "created_at"]
