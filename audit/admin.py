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


# Ids of the rows a list page showed, kept in its access event (a page holds at most
# list_per_page rows, 100 by default).
SHOWN_IDS_MAX = 200


class AdminReadsAudited(admin.ModelAdmin):
    """Writes an access event for every admin page that shows rows: a list page (how many
    rows, which ids, with its filters), an object's page, its history, and an action's
    confirmation page listing the rows it would act on.

    A ModelAdmin mixin rather than a middleware: the view knows which rows it rendered, a
    middleware would only see a URL. The event is written when the view returns, before the
    page is sent; a page that fails to render afterwards is still recorded as read.
    """

    def _read(
        self, request: HttpRequest, verb: str, target: str, rows: list[Any], **detail: Any
    ) -> None:
        ids = [row.pk for row in rows[:SHOWN_IDS_MAX]]
        access_event_record(
            actor=admin_actor(request),
            action=f"admin.{self.opts.model_name}.{verb}",
            status=200,
            target=target,
            records=len(rows),
            detail={"page": request.get_full_path()[:500], "ids": ids, **detail},
        )

    @staticmethod
    def _context(response: Any) -> dict[str, Any] | None:
        if response.status_code != 200:
            return None
        return getattr(response, "context_data", None)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        response = super().changelist_view(request, extra_context)
        context = self._context(response)
        if context is None:
            return response
        if "cl" in context:
            # The page's rows, fetched here once; the template reuses the fetched list.
            rows = list(context["cl"].result_list)
            self._read(request, "list", self.opts.label_lower, rows)
        elif "entries" in context:
            # An action's confirmation page (revoke, erase) lists the selected rows.
            rows = list(context["entries"])
            self._read(request, "confirm", self.opts.label_lower, rows)
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        response = super().change_view(request, object_id, form_url, extra_context)
        context = self._context(response)
        original = context.get("original") if context else None
        if original is not None:
            self._read(request, "view", f"{self.opts.label_lower}:{original.pk}", [original])
        return response

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        response = super().history_view(request, object_id, extra_context)
        context = self._context(response)
        obj = context.get("object") if context else None
        if obj is not None:
            self._read(request, "history", f"{self.opts.label_lower}:{obj.pk}", [obj])
        return response


class AuditedAdmin(AdminReadsAudited):
    """Writes an access event for every admin change, inside the admin's transaction (the
    admin's change views are atomic, and these hooks run in them), and for every page
    that shows rows."""

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


class ReadOnlyAdmin(AdminReadsAudited):
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
