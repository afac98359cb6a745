from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class StaffConfig(AppConfig):
    """Staff accounts: two-factor authentication for the admin and the auditor pages, and
    the lifetime of their sessions."""

    name = "staff"
    default = True

    def ready(self) -> None:
        from staff import signals  # noqa: F401 - records admin logins as access events


class ConsortiumAdminConfig(admin_apps.AdminConfig):
    """Django's admin, on a site that asks every staff user for a second factor."""

    default = False
    default_site = "staff.sites.ConsortiumAdminSite"
