from django.apps import AppConfig
from django.core import checks


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        from audit.witnesses import witnesses_check

        # A bad LOG_WITNESSES item stops `manage.py check`, migrate and runserver, instead
        # of surfacing only in a worker's log at the first push.
        checks.register(witnesses_check)
