from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.admin import AuditedAdmin, admin_actor
from consortium.errors import ConsortiumError
from consortium_client.keys import KeyFormatError, public_key_load
from partners import services
from partners.models import ApiKey, Partner, SharingGroup, SigningKey


class NoDeleteMixin:
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Partner)
class PartnerAdmin(NoDeleteMixin, AuditedAdmin):
    list_display = ["name", "display_name", "kind", "status", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["name", "display_name"]
    actions = ["suspend", "activate"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Log leaves name the partner: a renamed partner would lose its signed history.
        return ["name", "status", "created_at"] if obj else ["status", "created_at"]

    @admin.action(description="Suspend selected partners (their keys stop working at once)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        for partner in queryset:
            services.partner_suspend(
                partner=partner, reason="suspended in admin", actor=admin_actor(request)
            )
        self.message_user(request, f"Suspended {queryset.count()} partner(s).")

    @admin.action(description="Activate or reactivate selected partners")
    def activate(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        for partner in queryset:
            services.partner_activate(
                partner=partner, reason="activated in admin", actor=admin_actor(request)
            )
        self.message_user(request, f"Activated {queryset.count()} partner(s).")


@admin.register(SharingGroup)
class SharingGroupAdmin(AuditedAdmin):
    list_display = ["name"]
    filter_horizontal = ["members"]


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple
    )
    allowed_networks = forms.CharField(
        required=False, help_text="Comma-separated CIDR networks; empty allows any address."
    )

    class Meta:
        model = ApiKey
        fields = ["partner", "name", "scopes", "expires_at", "allowed_networks"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The key stores a list; shown as-is ("['10.0.0.0/8']") it would not survive a save.
        networks = self.initial.get("allowed_networks")
        if isinstance(networks, list):
            self.initial["allowed_networks"] = ", ".join(networks)

    def clean_allowed_networks(self) -> list[str]:
        raw = self.cleaned_data.get("allowed_networks") or ""
        if isinstance(raw, list):
            return raw
        try:
            return services.networks_clean(n for n in raw.split(",") if n.strip())
        except ConsortiumError as exc:
            raise forms.ValidationError(exc.detail) from exc


@admin.register(ApiKey)
class ApiKeyAdmin(NoDeleteMixin, AuditedAdmin):
    form = ApiKeyForm
    list_display = ["prefix", "partner", "name", "scopes", "expires_at", "revoked_at"]
    list_filter = ["partner"]
    search_fields = ["prefix", "name", "partner__name"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["partner", "scopes", "prefix", "revoked_at"] if obj else []

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            full_key = services.apikey_secret_assign(obj)
            messages.warning(
                request, f"API key for {obj.partner}: {full_key} - copy it now, it is not stored."
            )
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected API keys now")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            services.apikey_revoke(api_key=api_key, actor=admin_actor(request))
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


class SigningKeyForm(forms.ModelForm):
    public_key_text = forms.CharField(
        label="Public key",
        widget=forms.Textarea,
        help_text="Ed25519 public key: PEM, or base64 of the raw 32 bytes.",
    )

    class Meta:
        model = SigningKey
        fields = ["partner", "name"]

    def clean_public_key_text(self) -> str:
        text = self.cleaned_data["public_key_text"]
        try:
            public_key_load(text)
        except KeyFormatError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return text


@admin.register(SigningKey)
class SigningKeyAdmin(NoDeleteMixin, AuditedAdmin):
    list_display = ["key_id", "partner", "name", "created_at", "revoked_at"]
    list_filter = ["partner"]
    actions = ["revoke"]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = SigningKeyForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["partner", "key_id", "created_at", "revoked_at"] if obj else []

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["partner", "name", "public_key_text"]
        return ["partner", "name", "key_id", "created_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: SigningKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.signing_key_register(
            partner=obj.partner,
            public_key=form.cleaned_data["public_key_text"],
            name=obj.name,
            actor=admin_actor(request),
        )
        obj.pk, obj.key_id, obj.public_key = created.pk, created.key_id, created.public_key
        obj.created_at = created.created_at

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # signing_key_register already wrote the access event and the log event.
        return admin.ModelAdmin.log_addition(self, request, obj, message)

    @admin.action(description="Revoke selected signing keys now")
    def revoke(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        for signing_key in queryset:
            services.signing_key_revoke(
                signing_key=signing_key, actor=admin_actor(request), reason="revoked in admin"
            )
        self.message_user(request, f"Revoked {queryset.count()} signing key(s).")
