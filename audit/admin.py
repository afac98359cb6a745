from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from audit.actors import Actor
from audit.models import AccessEvent, AccessPeriod, LogEvent
from audit.services import access_event_record


def admin_actor(request: HttpRequest) -> Actor:
    # The admin site only lets staff users in, so the user is never anonymous here.
    return Actor.for_user(cast(User, request.user), client_ip=request.META.get("REMOTE_ADDR"))


class AuditedAdmin(admin.ModelAdmin):
    """Writes an access event for every admin change, inside the admin's transaction (the
    admin's change views are atomic, and these hooks run in them)."""

    def _access(self, request: HttpRequest, obj: Model, verb: str, message: Any) -> None:
        access_event_record(
            actor=admin_actor(request),
            action=f"admin.{obj._meta.model_name}.{verb}",
            status=200,
            target=f"{obj._meta.label_lower}:{obj.pk}",
            detail={"change": str(message)[:500]},
        )

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._access(request, obj, "add", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._access(request, obj, "change", message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        for obj in queryset:
            self._access(request, obj, "delete", "deleted")
        return super().log_deletions(request, queryset)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LogEvent)
class LogEventAdmin(ReadOnlyAdmin):
    list_display = ["index", "event_type", "time", "partner", "hash_list_id"]
    list_filter = ["event_type"]
    readonly_fields = ["index", "event_type", "time", "partner", "hash_list_id", "leaf_text"]
    exclude = ["leaf"]
    show_full_result_count = False

    @admin.display(description="leaf")
    def leaf_text(self, obj: LogEvent) -> str:
        return bytes(obj.leaf).decode("ascii")


@admin.register(AccessEvent)
class AccessEventAdmin(ReadOnlyAdmin):
    list_display = ["time", "actor", "action", "target", "records", "status", "client_ip"]
    list_filter = ["action", "status"]
    search_fields = ["actor", "target", "key_prefix"]
    show_full_result_count = False


@admin.register(AccessPeriod)
class AccessPeriodAdmin(ReadOnlyAdmin):
    list_display = ["number", "after_id", "last_id", "count", "log_index", "sealed_at"]
    readonly_fields = ["number", "after_id", "last_id", "count", "root", "log_index", "sealed_at"]
    show_full_result_count = False
